"""What a run says about itself: the log line of an interval and of an evaluation, the trackers' scalars, the loss
curve's title and the model card's figures. Words and numbers only: train.py computes, this module phrases.

- ``log_line``: ``step 100/300 | loss 3.2 | lr 3.00e-03 | grad norm 0.812 | 9,870 tok/s | MFU 41.0% | ETA 2.1 min``;
- ``early_estimate``: a long run's expected time, after its second step (before the first log line);
- ``evaluation_line``: ``eval step 100: val loss 3.1 | val bpb 1.5 | hellaswag acc_norm 0.2950``, and a mixture's
  ``by source: ...`` line (each source's figures and its share of the tokens drawn);
- ``tracker_scalars``: ``eval/val_loss``, ``eval/<task>/<metric>``, a mixture's ``val/<source>/loss`` and
  ``drawn/<source>/tokens``;
- ``plot_title``, ``card_sources``, ``evaluation_description``: the curve's title, the card's mixture table and how
  its scores were made.
"""

from pathlib import Path

import torch

from .tasks import TASKS, resolve_task_names
from .tasks.core import core_names


def log_line(done: int, max_steps: int, loss: float, lr: float, norm: float, tokens_per_s: float,
             tokens_per_step: int, mfu: float | None) -> str:  # fmt: skip
    """One interval of training in a line, with the time left at this speed."""
    eta = (max_steps - done) * tokens_per_step / tokens_per_s
    memory = f" | peak mem {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if torch.cuda.is_available() else ""
    return (
        f"step {done:>6}/{max_steps} | loss {loss:.4f} | lr {lr:.2e} | grad norm {norm:.3f} | "
        f"{tokens_per_s:,.0f} tok/s" + (f" | MFU {100 * mfu:.1f}%" if mfu is not None else "") + memory
        + f" | ETA {duration(eta)}"
    )  # fmt: skip


def duration(seconds: float) -> str:
    """``42 s``, ``12.5 min``, ``13.9 h``: a time as a user reads it."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


LONG_RUN_SECONDS = 30 * 60  # runs expected to take longer say so after their second step


def early_estimate(step_seconds: float, steps_left: int, log_interval: int) -> str | None:
    """How long a long run will take, said after a step past the warm-up (the first step compiles and fills caches),
    before the first log line: GPT-2's fine-tune on a CPU takes minutes a step, and its user should not wait for
    line 1 at step ``log_interval`` (40 minutes) to learn that the run takes hours. None for a short run."""
    left = step_seconds * steps_left
    if left < LONG_RUN_SECONDS or log_interval <= 2:
        return None
    return (f"a step takes {duration(step_seconds)}: the {steps_left} steps left will take about {duration(left)} at "
            f"this speed (the log line every {log_interval} steps tells more)")  # fmt: skip


def headline_metric(result: dict) -> str:
    """The metric a task's curve shows: acc_norm where the task has it (lm-eval's usual headline), else acc."""
    return "acc_norm" if "acc_norm" in result else "acc"


def evaluation_lines(step: int, results: dict) -> list[str]:
    """An evaluation in a line (validation, each benchmark task's headline metric, the centred mean), and for a
    mixture a second: each source's validation figures and its share of the tokens drawn."""
    tasks = results.get("tasks", {})
    tasks_text = "".join(f" | {name} {headline_metric(result)} {result[headline_metric(result)]:.4f}"
                         for name, result in tasks.items() if name in TASKS)  # fmt: skip
    if "aggregate" in tasks:
        tasks_text += f" | centered acc {tasks['aggregate']['centered_acc']:.4f}"
    if "core" in results:
        tasks_text += f" | CORE {results['core']['core']:.4f}"
    bpb = f" | val bpb {results['val_bpb']:.4f}" if "val_bpb" in results else ""  # not of a chat's answers
    lines = [f"eval step {step}: val loss {results['val_loss']:.4f}{bpb}{tasks_text}"]
    if "sources" in results:
        total = sum(results["drawn"].values())
        lines.append("  by source: " + " | ".join(
            f"{label} val loss {figures['val_loss']:.4f}"
            + (f" bpb {figures['val_bpb']:.4f}" if "val_bpb" in figures else "") + ", drawn "
            f"{results['drawn'][label]:,} tokens ({100 * results['drawn'][label] / max(total, 1):.1f}%)"
            for label, figures in results["sources"].items()
        ))  # fmt: skip
    return lines


def tracker_scalars(results: dict) -> dict[str, float]:
    """``eval/val_loss``, ``eval/val_bpb``, ``eval/<task>/<metric>`` (stderr and n too), ``eval/centered_acc``; a
    mixture's ``val/<source>/loss``, ``val/<source>/bpb`` and ``drawn/<source>/tokens``."""
    scalars = {f"eval/{name}": value for name, value in results.items()
               if name not in ("tasks", "sources", "drawn", "core")}  # fmt: skip
    for label, figures in results.get("sources", {}).items():  # a mixture's sources
        scalars[f"val/{label}/loss"] = figures["val_loss"]
        if "val_bpb" in figures:
            scalars[f"val/{label}/bpb"] = figures["val_bpb"]
        scalars[f"drawn/{label}/tokens"] = results["drawn"][label]
    if "core" in results:
        scalars["eval/core"] = results["core"]["core"]
        scalars.update({f"eval/core/{label}": task["centered"] for label, task in results["core"]["tasks"].items()})
    for name, result in results.get("tasks", {}).items():
        if name == "aggregate":
            scalars["eval/centered_acc"] = result["centered_acc"]
            continue
        scalars.update({f"eval/{name}/{metric}": value for metric, value in result.items() if metric != "details"})
    return scalars


def evaluation_tasks(config) -> tuple[list[str], dict[str, str], dict[str, int | None]]:
    """The benchmark tasks each evaluation of a run (a TrainConfig) scores, with their data and item limits:
    ``eval_tasks``, and HellaSwag where ``hellaswag_data`` names its data (its own options, as before the others)."""
    _, others = core_names(list(config.eval_tasks))  # CORE's are core_tasks'
    names = resolve_task_names(others) if others else []
    data = {name: path for name, path in config.eval_task_data.items() if name != "core"}
    limits: dict[str, int | None] = {name: config.eval_task_limit for name in names}
    if config.hellaswag_data:
        names = names if "hellaswag" in names else ["hellaswag", *names]
        data.setdefault("hellaswag", config.hellaswag_data)
        limits["hellaswag"] = config.hellaswag_limit
    return names, data, limits


def core_tasks(config) -> tuple[list[str] | None, str | None]:
    """The CORE tasks each evaluation scores (``[]``: all of them; None: none) and the bundle (None: the cached
    download)."""
    labels, _ = core_names(list(config.eval_tasks))
    return labels, config.eval_task_data.get("core")


def evaluation_description(config) -> str:
    """How the model card's scores were made, in words: shots, and each task's data and items."""
    names, data, limits = evaluation_tasks(config)
    sources = ", ".join(f"{name}: {data.get(name) or TASKS[name].hub[0]} (first {limits[name] or 'all'} items)"
                        for name in names)  # fmt: skip
    return f"{config.eval_num_fewshot}-shot; {sources}"


def plot_title(run_dir: Path, model, data) -> str:
    """The run, its model's size and its data (a ``gpt_scratch.data.RunData``), e.g. ``quickstart: 4 layers x 128,
    1.3M parameters, on python-stdlib``; a mixture is counted, its sources are in the legend."""
    parameters = sum(p.numel() for p in model.parameters())
    size = f"{model.config.n_layer} layers x {model.config.n_embd}, {parameters / 1e6:.1f}M parameters"
    on = f"a mixture of {len(data.sources)} sources" if data.mixed else data.describe()
    return f"{run_dir.name}: {size}, on {on}"


def card_sources(sources: list, mixed: bool, results: dict) -> list[dict] | None:
    """The card's table of a mixture's sources: weight, tokens drawn, and the last evaluation's figures."""
    if not mixed:
        return None
    return [{"label": entry.label, "weight": entry.weight, "drawn": results["drawn"][entry.label],
             **results["sources"][entry.label]} for entry in sources]  # fmt: skip
