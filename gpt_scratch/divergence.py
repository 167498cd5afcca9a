"""Which checkpoint is good, and what to do when training diverges.

Finite weights are not good weights: a step at ``--lr 1e6`` leaves finite weights of size 2e5, and every step from
them is NaN, at any learning rate. So a checkpoint counts as good only once a step trained from it was healthy
(a finite loss, not a spike). When the loss or gradient norm becomes non-finite, the checkpoints after the last good
one are renamed ``diverged-step-N`` (kept for inspection, invisible to ``--resume auto``), and the message gives a
command that continues from the last good checkpoint, or starts again, with lower learning rates.
"""

import shlex
import statistics
from pathlib import Path

from .checkpoint import checkpoint_dirs

SPIKE_FACTOR = 2.0  # a loss above this many times the median of the recent ones is a spike, not a healthy step
SPIKE_WINDOW = 20  # the recent losses the median is taken over
# min_lr too: the schedule ends at min_lr / lr of each group's rate, so lowering lr alone would soon put min_lr above
# it (a second recovery then failed validation).
LR_FIELDS = ("lr", "min_lr", "embedding_lr", "head_lr", "matrix_lr")


class CheckpointHealth:
    """Tracks the newest checkpoint that a healthy step followed."""

    def __init__(self) -> None:
        self.last_good: Path | None = None
        self.pending: Path | None = None  # saved (or resumed from), no step trained from it yet
        self.recent: list[float] = []

    def checkpointed(self, path: Path, losses: list[float] | None = None) -> None:
        """A checkpoint was written, or resumed from (with the run's losses so far, so spikes are judged at once)."""
        self.pending = path
        if losses:
            self.recent = losses[-SPIKE_WINDOW:]

    def step(self, loss: float) -> str | None:
        """Record a finite training loss; returns a warning when it is a spike."""
        spike = bool(self.recent) and loss > SPIKE_FACTOR * statistics.median(self.recent)
        self.recent = (self.recent + [loss])[-SPIKE_WINDOW:]
        if spike:
            return f"loss spike: {loss:.4f}, {loss / statistics.median(self.recent):.1f}x the recent median"
        if self.pending is not None:
            self.last_good, self.pending = self.pending, None
        return None


def quarantine_after(run_dir: Path, last_good: Path | None) -> list[Path]:
    """Rename the checkpoints newer than ``last_good`` to ``diverged-step-N``: kept, but never resumed by ``auto``."""
    moved = []
    for path in checkpoint_dirs(run_dir):
        if last_good is None or path.name > last_good.name:
            target = unused_name(path.with_name("diverged-" + path.name))
            path.rename(target)
            moved.append(target)
    return moved


def unused_name(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``...: a run that diverges again at the same step keeps both bad checkpoints
    and sets the new one aside too."""
    candidate, copy = path, 1
    while candidate.exists():
        copy += 1
        candidate = path.with_name(f"{path.name}-{copy}")
    return candidate


def lower_learning_rates(config) -> dict[str, float]:
    """Every learning rate the run sets, 10x lower, and at most a conservative 1e-3 for AdamW's ``lr``."""
    factor = min(0.1, 1e-3 / config.lr)
    rates = {name: getattr(config, name) for name in LR_FIELDS}
    rates["matrix_lr"] = rates["matrix_lr"] or (config.matrix_learning_rate if config.optimizer == "muon" else None)
    return {name: float(f"{rate * factor:.3g}") for name, rate in rates.items() if rate}


def command_with(arguments: list[str], overrides: dict[str, object], drop: tuple[str, ...] = ()) -> list[str]:
    """``arguments`` (a train.py command line, possibly a launcher's) with ``--key value`` overrides replacing any
    earlier value, and the ``drop`` flags removed."""
    replaced = set(overrides) | set(drop)
    kept, skip = [], False
    for argument in arguments:
        if skip:
            skip = False
            continue
        key = argument[2:].split("=", 1)[0] if argument.startswith("--") else None
        if key in replaced:
            skip = "=" not in argument
            continue
        kept.append(argument)
    return kept + [item for key, value in overrides.items() for item in (f"--{key}", str(value))]


class DivergedError(RuntimeError):
    """Training stopped on a non-finite loss, gradient norm or weights; the message holds the recovery command."""


def divergence_error(what: str, config, health: CheckpointHealth, run_dir: Path, arguments: list[str],
                     main_process: bool) -> DivergedError:  # fmt: skip
    """The error that stops a diverged run (``what`` happened), with a command that recovers from it: resume from
    the last checkpoint a healthy step followed, every learning rate 10x lower; the checkpoints after it set aside
    (by the main process) where ``--resume auto`` does not look."""
    good = health.last_good
    moved = quarantine_after(run_dir, good) if main_process else []
    lower = lower_learning_rates(config)
    if good is None:
        advice = "No checkpoint was followed by a healthy step; start again with lower learning rates: "
        command = command_with(arguments, lower, drop=("resume",))
    else:
        advice = f"Last good checkpoint (a healthy step followed it): {good}. Continue with lower learning rates: "
        command = command_with(arguments, {"resume": "auto", **lower})
    if moved:
        advice = (f"{len(moved)} checkpoint(s) no healthy step followed are kept as {moved[0].parent}/diverged-step-*, "
                  f"where --resume auto does not look. {advice}")  # fmt: skip
    return DivergedError(f"{what}; training stopped instead of continuing on NaN. {advice}{shlex.join(command)}")
