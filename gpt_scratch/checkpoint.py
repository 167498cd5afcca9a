"""Whole-run checkpoints, written atomically and durably, verified on resume, so a killed run resumes exactly.

A checkpoint is a directory ``step-000123`` holding what Accelerate saves (model, optimizer, scheduler, every
process's RNG states), each process's data-pipeline state, and ``trainer_state.json`` (step, history, the run's
settings, and the size and BLAKE2b checksum of every file). It is written as ``.tmp-step-000123``, fsynced, and
renamed only once every process has finished writing, so a directory named ``step-*`` is complete even after a power
loss. ``resume="auto"`` takes the newest checkpoint whose files are all there with their recorded sizes and content,
and says which newer ones it skipped and why.
"""

import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import broadcast_object_list
from safetensors import SafetensorError

from .atomic import fsync_path, fsync_tree, replace_durably
from .checksum import buffer_digest, file_digest
from .storage import StorageError, directory_bytes, free_bytes, gigabytes, write_failure


class _LeftOutTiedHead(logging.Filter):
    """Accelerate notes, at every save of a model whose head is tied to its embedding, that it left the head (the
    embedding's own tensor) out of the file: as it should, and the model ties it back when it loads. Nothing a user
    can act on, so it is not printed."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor {'lm_head.weight'} while saving" not in record.getMessage()


logging.getLogger("accelerate.utils.other").addFilter(_LeftOutTiedHead())

_STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_FILE = "trainer_state.json"
STATE_CHECKSUM = "state_blake2b"  # trainer_state.json's own checksum, of the rest of its content

# Settings that make a run what it is: resuming with another value would silently train a different run (another
# model shape, data, data order or batch). Everything else (learning rates, min_lr, max_steps, warmup, the schedule
# and its decay_fraction, intervals, evaluation, logging, export) may change on resume; the schedule follows the new
# values (extending a warmup-stable-decay run's stable phase, then decaying, is what wsd is for).
RUN_DEFINING_SETTINGS = (
    "init_from", "model", "n_layer", "n_head", "n_embd", "padded_vocab_size", "dropout",
    "position_embedding_type", "rope_theta", "norm_type", "qk_norm", "activation_function", "final_logit_softcapping",
    "tie_word_embeddings", "bias", "zero_init_residual",
    "tokenizer", "data", "data_name", "data_split", "text_column", "token_shards", "val_docs", "shuffle_buffer",
    "data_workers", "window_shuffle", "document_mask",
    "seq_len", "micro_batch_size", "tokens_per_step", "seed",
    "optimizer", "weight_decay", "beta1", "beta2", "muon_momentum", "mixed_precision",
)  # fmt: skip


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """Checkpoints in ``run_dir`` (renamed into place, so complete when written), oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def state_digest(state: dict[str, Any]) -> str:
    """BLAKE2b of the state file's content but its own checksum: the one file the ``files`` checksums cannot cover.
    A changed step would otherwise resume a run at another point of its schedule, without a word."""
    content = {key: value for key, value in state.items() if key != STATE_CHECKSUM}
    content = json.loads(json.dumps(content))  # as it reads back: tuples are lists, keys are strings
    return buffer_digest(json.dumps(content, sort_keys=True).encode())


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` cannot be resumed from (a missing, truncated, altered or unreadable file), or None when it is
    intact. Checkpoints written before checksums existed are checked by size."""
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError) as error:
        return f"{STATE_FILE} is unreadable ({error})"
    if STATE_CHECKSUM in state and state_digest(state) != state[STATE_CHECKSUM]:
        return f"{STATE_FILE} does not match its checksum (its step, history or settings changed after it was written)"
    for name, written in state.get("files", {}).items():
        file = path / name
        size, checksum = (written, None) if isinstance(written, int) else (written["bytes"], written["blake2b"])
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} is {file.stat().st_size} bytes, {size} were written"
        if checksum is not None and file_digest(file) != checksum:
            return f"{name} does not match its checksum (its content changed after it was written)"
    return None


def resolve_resume(resume: str | None, run_dir: str | Path, say: Callable[[str], None] = print) -> Path | None:
    """The checkpoint to resume from: None, the newest intact one (``"auto"``), or a given directory. What it chose
    instead of the obvious (a damaged newer checkpoint skipped, no checkpoint at all) goes to ``say``, as a log line."""
    if resume is None:
        return None
    if resume == "auto":
        skipped = []
        for path in reversed(checkpoint_dirs(run_dir)):
            problem = checkpoint_problem(path)
            if problem is None:
                if skipped:
                    say(f"resuming from {path}, skipping damaged newer checkpoints: {'; '.join(skipped)}")
                return path
            skipped.append(f"{path.name} ({problem})")
        if skipped:
            raise ValueError(f"no intact checkpoint in {run_dir}: {'; '.join(skipped)}; start a new run_dir")
        # A typo in run_dir must not train from scratch without a word.
        say(f"no checkpoint in {run_dir}: starting a new run")
        return None
    path = Path(resume)
    if not path.exists():
        raise FileNotFoundError(f"{no_such_checkpoint(path, run_dir)}; or use --resume auto")
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {STATE_FILE}); use --resume auto")
    if problem := checkpoint_problem(path):
        raise ValueError(f"checkpoint {path} is damaged: {problem}; resume from another one (or --resume auto)")
    return path


def no_such_checkpoint(path: Path, run_dir: str | Path | None = None) -> str:
    """That checkpoint ``path`` does not exist, with the checkpoints its run (``run_dir``, or the run ``path`` names
    by its ``checkpoints/`` parent) does have."""
    if run_dir is None:
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    found = checkpoint_dirs(run_dir)
    listed = f"{run_dir}'s checkpoints: {', '.join(str(p) for p in found)}" if found else f"{run_dir} holds none"
    return f"checkpoint {path} does not exist ({listed})"


def another_run_problem(run_dir: str | Path, config: dict[str, Any] | None = None) -> str | None:
    """Why a new run (no ``--resume``) must not start in ``run_dir``: it holds another run's checkpoints or its
    exported model, which the new run would replace (and a later ``--resume auto`` would take the old checkpoints for
    the new run's). None when the directory holds no run. With ``config`` (the new run's settings), a run of other
    settings that define a run is told to choose another directory: resuming it would be refused."""
    run_dir = Path(run_dir)
    checkpoints = checkpoint_dirs(run_dir)
    held = [f"checkpoints/{p.name}" for p in checkpoints][-2:]
    model_dir = run_dir / "model"
    if model_dir.is_dir() and any(model_dir.iterdir()):
        held.append(f"the exported model {model_dir}")
    if not held:
        return None
    other = next(run_dir.with_name(f"{run_dir.name}-{n}") for n in range(2, 10_000)
                 if not run_dir.with_name(f"{run_dir.name}-{n}").exists())  # fmt: skip
    differ = other_settings(checkpoints[-1], config) if checkpoints and config else {}
    if differ:
        listed = ", ".join(f"{k}: {old!r} there, {new!r} here" for k, (old, new) in list(differ.items())[:4])
        return (f"{run_dir} holds another run with other settings ({listed}), which a new run there would replace. "
                f"Start this one in another directory, e.g. --run_dir {other}")  # fmt: skip
    return (
        f"{run_dir} holds another run ({', '.join(held)}), which a new run there would replace. Continue that run "
        f"with --resume auto, or start this one in another directory, e.g. --run_dir {other}"
    )


def saved_settings(state: dict[str, Any]) -> dict[str, Any]:
    """The settings a checkpoint's state records; a setting added after it was written had its default then (e.g.
    document_mask: off)."""
    from .train_config import TrainConfig

    return {**TrainConfig().to_dict(), **state.get("config", {})}


def other_settings(checkpoint: Path, config: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The settings that define a run in which ``config`` differs from the run ``checkpoint`` belongs to (its
    tokenizer when both name one: an unset tokenizer is resolved only at the start)."""
    try:
        saved = saved_settings(json.loads((checkpoint / STATE_FILE).read_text()))
    except (OSError, ValueError):
        return {}
    changed = settings_changed(saved, config)
    if config.get("tokenizer") is None:
        changed.pop("tokenizer", None)
    return {k: v for k, v in changed.items() if k in RUN_DEFINING_SETTINGS}


def _unordered(value: Any) -> Any:
    """A mixture given as a list of entries, in an order-free form: the order its sources are listed in is not part
    of what a run is (a mapping's is not either; the mixture keeps each source's state by label)."""
    if isinstance(value, list) and all(isinstance(entry, dict) for entry in value):
        return sorted(json.dumps(entry, sort_keys=True, default=str) for entry in value)
    return value


def settings_changed(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Every setting whose value differs, as name -> (saved, current)."""
    return {k: (saved.get(k), current.get(k)) for k in sorted(set(saved) | set(current))
            if _unordered(saved.get(k)) != _unordered(current.get(k))}  # fmt: skip


def check_resumable(
    checkpoint: Path,
    config: dict[str, Any],
    world_size: int,
    shards: dict[str, str] | None = None,
    tokenizer: dict[str, str] | None = None,
) -> dict[str, tuple[Any, Any]]:
    """Refuse a resume that would make the run something else; return the legitimate changes (to apply and log).

    Two changes only look run-defining: ``micro_batch_size`` with the same ``tokens_per_step`` (the gradient
    accumulation changes, the tokens of each step do not; not with DataLoader workers, whose batches are whole), and
    ``token_shards`` moved to another path (``shards``: the identity of each prepared source's shards now, by label,
    compared with the saved ones), and likewise ``tokenizer`` (``tokenizer``: its identity now). Shards or a
    tokenizer changed in place (prepared or trained again) are refused although their path is the same.
    """
    state = json.loads((checkpoint / STATE_FILE).read_text())
    saved = saved_settings(state)
    changed = settings_changed(saved, config)
    defining = {k: v for k, v in changed.items() if k in RUN_DEFINING_SETTINGS}
    same_tokens = "tokens_per_step" not in changed and not config.get("data_workers")
    if "micro_batch_size" in defining and same_tokens:
        del defining["micro_batch_size"]
    # Each prepared source's shards, by label (a checkpoint from before mixtures recorded its one source's alone).
    saved_shards = state.get("token_shards_identities") or (
        {saved.get("data"): state["token_shards_identity"]} if "token_shards_identity" in state else {}
    )
    shards = shards or {}
    other = sorted(label for label in shards if label in saved_shards and saved_shards[label] != shards[label])
    if other:  # other shards, at another path or rewritten in place at the same one

        def named(settings: dict) -> str:  # one source's by its path, a mixture's by their labels
            return settings["token_shards"] if isinstance(settings.get("token_shards"), str) else ", ".join(other)

        defining["token_shards"] = (f"{named(saved)} (identity {saved_shards[other[0]][:12]})",
                                    f"{named(config)} (identity {shards[other[0]][:12]})")  # fmt: skip
    elif shards and shards.keys() <= saved_shards.keys():
        defining.pop("token_shards", None)  # the same shards, moved
    saved_tokenizer = state.get("tokenizer_identity")
    if tokenizer is not None and saved_tokenizer is not None:
        if saved_tokenizer["sha256"] == tokenizer["sha256"]:
            defining.pop("tokenizer", None)
        else:
            defining["tokenizer"] = (f"{saved_tokenizer['name']} (sha256 {saved_tokenizer['sha256'][:12]})",
                                     f"{tokenizer['name']} (sha256 {tokenizer['sha256'][:12]})")  # fmt: skip
    saved_world = state.get("world_size", world_size)
    if saved_world != world_size:
        defining["processes"] = (saved_world, world_size)
    if defining:
        listed = ", ".join(f"{k}: {old!r} in the checkpoint, {new!r} now" for k, (old, new) in defining.items())
        raise ValueError(
            f"cannot resume {checkpoint} with other settings that define the run ({listed}). Resume with the "
            "checkpoint's values, or start a new run_dir"
        )
    ignored = {"resume", "run_dir"}
    return {k: v for k, v in changed.items() if k not in ignored}


def make_room(root: Path, needed: int, prunable: list[Path], intact: str) -> str | None:
    """Ensure ``needed`` bytes (plus 10%) are free in ``root`` for the next checkpoint, removing ``prunable`` (older
    checkpoints, oldest first) early if that helps; the problem in words when it cannot be done."""
    while free_bytes(root) < needed * 1.1 and prunable:
        shutil.rmtree(prunable.pop(0), ignore_errors=True)
    if free_bytes(root) >= needed * 1.1:
        return None
    return (
        f"not enough space in {root} for the next checkpoint: {gigabytes(free_bytes(root))} free, about "
        f"{gigabytes(needed)} needed. Free space, then resume with --resume auto ({intact})"
    )


def save_checkpoint(
    accelerator,
    run_dir: str | Path,
    step: int,
    data_state: dict[str, Any],
    trainer_state: dict[str, Any],
    keep: int,
    protect: Path | None = None,
    estimate: int = 0,
) -> Path:
    """Save everything needed to continue after ``step``; every process must call it. Of the older checkpoints the
    newest ``keep`` stay, and ``protect`` (the last one known good) whatever its age.

    Before writing, the free space is checked against the size of the newest checkpoint (or ``estimate`` bytes for
    the first); a write that fails anyway is removed and reported in one line (``StorageError``).
    """
    root = Path(run_dir) / "checkpoints"
    final = root / f"step-{step:06d}"
    staging = root / f".tmp-step-{step:06d}"
    existing = checkpoint_dirs(run_dir)
    needed = directory_bytes(existing[-1]) if existing else estimate
    intact = f"{existing[-1]} is intact" if existing else "no checkpoint was written yet"
    prunable = [path for path in existing[:-1] if path != protect]  # never the newest, nor the last good one
    problem = make_room(root, needed, prunable, intact) if accelerator.is_main_process else None
    if accelerator.num_processes > 1:  # every process stops, or none
        problem = broadcast_object_list([problem])[0]
    if problem:
        raise StorageError(problem)
    try:
        if accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(staging))
        torch.save(data_state, staging / f"data_state_{accelerator.process_index}.pt")
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            written = [p for p in sorted(staging.iterdir()) if p.is_file()]
            files = {p.name: {"bytes": p.stat().st_size, "blake2b": file_digest(p)} for p in written}
            state = {**trainer_state, "step": step, "world_size": accelerator.num_processes, "files": files}
            state[STATE_CHECKSUM] = state_digest(state)
            (staging / STATE_FILE).write_text(json.dumps(state, indent=2))
            fsync_tree(staging)  # data on disk before the name says "complete"
    except (OSError, RuntimeError, SafetensorError) as error:  # torch reports a full disk as a RuntimeError
        fix = f"Free space (or lower --keep_checkpoints), then resume with --resume auto ({intact})"
        writable = f"Make {root} writable, then resume with --resume auto ({intact})"
        failure = write_failure(error, root, needed, f"checkpoint {final.name}", fix, writable)
        shutil.rmtree(staging, ignore_errors=True)
        raise failure from None
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        replace_durably(staging, final)  # the atomic moment: before it the checkpoint does not exist, after it does
        for old in checkpoint_dirs(run_dir)[:-keep]:
            if old != protect:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore model, optimizer, scheduler and RNG states; returns (this process's data state, trainer state)."""
    data_file = path / f"data_state_{accelerator.process_index}.pt"
    if not data_file.is_file():
        raise ValueError(
            f"{path} was saved by fewer processes than this run has ({accelerator.num_processes}); "
            "resume with the same number of processes"
        )
    accelerator.load_state(str(path))
    data_state = torch.load(data_file, weights_only=True)
    trainer_state = json.loads((path / STATE_FILE).read_text())
    return data_state, trainer_state


BEST_WEIGHTS = "best/model.safetensors"  # export_best: the weights of the lowest validation loss so far


def keep_best_weights(accelerator, model: torch.nn.Module, run_dir: Path) -> None:
    """Write the model's weights as run_dir/best/model.safetensors: beside, fsynced, renamed into place and the
    rename made durable (a power loss leaves the previous best or this one, never a partial file). On every process
    (FSDP gathers the shards); written by the main one."""
    from safetensors.torch import save_file

    weights = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return
    path = run_dir / BEST_WEIGHTS
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    # Copies: a tied head shares the embedding's storage, which safetensors refuses to write twice.
    save_file({name: tensor.detach().cpu().clone().contiguous() for name, tensor in weights.items()}, staging)
    fsync_path(staging)
    replace_durably(staging, path)
