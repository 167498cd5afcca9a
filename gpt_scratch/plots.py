"""The loss curve a training run leaves in its directory."""

from pathlib import Path


def plot_sources(ax, sources: dict[str, dict], figure: str, name: str) -> None:
    """A dashed curve of ``figure`` for each of a mixture's sources, in colours the run's own curves do not use
    (train: C0, val loss: C1, bpb: C3)."""
    colours = [f"C{index}" for index in (2, 4, 5, 6, 7, 8, 9)]
    for index, (label, figures) in enumerate(sources.items()):
        steps, values = zip(*figures[figure])
        ax.plot(steps, values, ".--", color=colours[index % len(colours)], label=f"{name}: {label}", linewidth=1)


def plot_training_curves(history: dict[str, list[tuple[int, float]]], path: str | Path, title: str = "") -> Path:
    """Left: train and val loss (nats per token) against step. Right, when measured: validation bits per byte, the
    axis that compares runs with different tokenizers, and each benchmark task's accuracy on its own scale. A
    mixture's sources have a curve each on both."""
    # Imported here, not at the top: pyplot costs every train.py process a second at start-up, and the first plot
    # comes at the first evaluation.
    import matplotlib

    matplotlib.use("Agg")  # files only: training machines have no display
    import matplotlib.pyplot as plt

    with_bpb = bool(history.get("val_bpb"))
    fig, axes = plt.subplots(1, 2 if with_bpb else 1, figsize=(13 if with_bpb else 8, 4.5), dpi=120, squeeze=False)
    ax = axes[0][0]
    if history.get("train_loss"):
        steps, values = zip(*history["train_loss"])
        ax.plot(steps, values, color="tab:blue", alpha=0.25, linewidth=0.8)
        # Packed batches come from few documents each, so per-step loss is noisy: show a moving average on top.
        smoothed, average = [], values[0]
        for value in values:
            average = 0.9 * average + 0.1 * value
            smoothed.append(average)
        ax.plot(steps, smoothed, color="tab:blue", label="train loss (EMA 0.9)")
    mixture = history.get("val_sources") or {}  # a mixture: each source's own validation curves too
    if history.get("val_loss"):
        steps, values = zip(*history["val_loss"])
        ax.plot(steps, values, "o-", color="tab:orange", label="val loss" + (" (mixture)" if mixture else ""),
                markersize=4)  # fmt: skip
    plot_sources(ax, mixture, "val_loss", "val loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="best")
    side = axes[0][-1]
    if with_bpb:
        steps, values = zip(*history["val_bpb"])
        side.plot(steps, values, "o-", color="tab:red", label="val bits per byte", markersize=4)
        plot_sources(side, mixture, "val_bpb", "bpb")
        side.set_xlabel("step")
        side.set_ylabel("bits per byte")
        side.grid(alpha=0.3)
        side.set_title("validation bits per byte (compares tokenizers)")
    handles, labels = side.get_legend_handles_labels() if with_bpb else ([], [])
    curves = dict(history.get("tasks") or {})
    if history.get("hellaswag") and "hellaswag" not in curves:  # a run from before the other tasks
        curves["hellaswag"] = history["hellaswag"]
    if curves:
        right = side.twinx()
        for name, points in curves.items():
            steps, values = zip(*points)
            right.plot(steps, values, "s--", label=name, markersize=3, linewidth=1)
        right.set_ylabel("task accuracy (acc_norm, else acc)")
        more_handles, more_labels = right.get_legend_handles_labels()
        if not with_bpb:
            handles, labels = ax.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    if handles:
        side.legend(handles, labels, loc="best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
