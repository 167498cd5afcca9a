"""The loss curve a training run leaves in its directory."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: training machines have no display
import matplotlib.pyplot as plt  # noqa: E402


def plot_training_curves(history: dict[str, list[tuple[int, float]]], path: str | Path, title: str = "") -> Path:
    """Train and val loss against step (left axis) and HellaSwag acc_norm (right axis, when measured)."""
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for key, style in (("train_loss", "-"), ("val_loss", "o-")):
        if history.get(key):
            steps, values = zip(*history[key])
            ax.plot(steps, values, style, label=key.replace("_", " "), markersize=4)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if history.get("hellaswag"):
        right = ax.twinx()
        steps, values = zip(*history["hellaswag"])
        right.plot(steps, values, "s--", color="tab:green", label="HellaSwag acc_norm", markersize=4)
        right.set_ylabel("HellaSwag acc_norm")
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, loc="upper right")
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
