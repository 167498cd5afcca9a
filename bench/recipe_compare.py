"""The GPT-2 recipe against the modern one, on the same data, tokens, seed, depth and width, with the two ablations
in between (the modern architecture trained with AdamW; GPT-2's architecture trained with the modern optimizer and
schedule), so a reader sees which part gives what.

Every recipe is train.py's own setup (``train.setup``: model, data, optimizers, schedules) from a YAML preset, and
steps with train.py's own ``train_step``; the bench adds a validation loss every ``--eval-every`` steps on held-out
windows larger than the quickstart's, and times each step alone (evaluation excluded). It prints the table, the
first step at which each recipe reaches the GPT-2 recipe's final validation loss, seconds per step and its ratio to
GPT-2's (all measured in this run, alternating recipes within each seed), the spread over seeds, and writes both
curves to one PNG.

    python bench/recipe_compare.py                                     # the quickstart setting, 2 seeds (~40 min)
    python bench/recipe_compare.py --steps 100 --seeds 1 --recipes gpt2 modern
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import train  # noqa: E402
from gpt_scratch.train_config import MODEL_OPTIONS  # noqa: E402
from gpt_scratch.training import train_step, validation_loss  # noqa: E402

GPT2_PRESET = ROOT / "configs" / "quickstart-gpt2.yaml"
MODERN_PRESET = ROOT / "configs" / "quickstart.yaml"


def recipes() -> dict[str, list[str]]:
    """Command lines of the four recipes. The ablations take the modern preset's model options (architecture) or
    everything else it changes (optimizer, learning rates, schedule) on top of the GPT-2 preset."""
    gpt2 = yaml.safe_load(GPT2_PRESET.read_text())
    modern = yaml.safe_load(MODERN_PRESET.read_text())
    changed = {k: v for k, v in modern.items() if gpt2.get(k) != v and k != "run_dir"}
    architecture = {k: v for k, v in changed.items() if k in MODEL_OPTIONS}
    optimization = {k: v for k, v in changed.items() if k not in MODEL_OPTIONS}

    def flags(values: dict) -> list[str]:
        return [item for k, v in values.items() for item in (f"--{k}", json.dumps(v))]

    return {
        "gpt2": [str(GPT2_PRESET)],
        "modern": [str(MODERN_PRESET)],
        "modern arch + gpt2 optim": [str(GPT2_PRESET), *flags(architecture)],
        "gpt2 arch + modern optim": [str(GPT2_PRESET), *flags(optimization)],
    }


def start(argv: list[str], run_dir: Path, seed: int, args: argparse.Namespace) -> train.Run:
    common = ["--run_dir", str(run_dir), "--seed", str(seed), "--max_steps", str(args.steps), "--val_docs",
              str(args.val_docs), "--val_batches", str(args.val_batches), "--hellaswag_data", "null", "--report_to",
              "none", "--eval_interval", str(10**9), "--checkpoint_interval", str(10**9)]  # fmt: skip
    return train.setup([*argv, *common], ExitStack())  # nothing to hold: no checkpoint, no export


def validation_windows(run: train.Run) -> list:
    """The run's one source's validation windows."""
    (windows,) = run.data.validation.values()
    return windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--ablation-seeds", type=int, default=1, help="seeds for the two ablations (time)")
    parser.add_argument("--val-docs", type=int, default=300, help="held-out documents (the quickstart's: 100)")
    parser.add_argument("--val-batches", type=int, default=40, help="16 x 128-token windows (the quickstart's: 10)")
    parser.add_argument("--recipes", nargs="+", default=list(recipes()), choices=list(recipes()))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "recipe_compare")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    # Per recipe and seed: validation loss at each eval step, and the seconds of every training step.
    curves: dict[str, dict[int, list[tuple[int, float]]]] = {name: {} for name in args.recipes}
    seconds: dict[str, list[float]] = {name: [] for name in args.recipes}
    with tempfile.TemporaryDirectory() as scratch:
        for index, seed in enumerate(range(1337, 1337 + args.seeds)):
            names = [n for n in args.recipes if n in ("gpt2", "modern") or index < args.ablation_seeds]
            runs = {name: start(recipes()[name], Path(scratch) / f"{i}-{seed}", seed, args)
                    for i, name in enumerate(names)}  # fmt: skip
            for name in names:
                curves[name][seed] = [(0, validation_loss(runs[name].model, validation_windows(runs[name]),
                                                          runs[name].accelerator, None))]  # fmt: skip
            # Recipes take turns, a block of eval_every steps each: machine load hits them alike.
            for block_start in range(0, args.steps, args.eval_every):
                for name in names:
                    run = runs[name]
                    for _ in range(min(args.eval_every, args.steps - block_start)):
                        began = time.perf_counter()
                        loss, _ = train_step(run.forward, run.model, run.data.train, run.optimizers, run.schedulers,
                                             run.accelerator, run.accumulation, run.config.grad_clip)  # fmt: skip
                        loss.item()
                        seconds[name].append(time.perf_counter() - began)
                    step = min(block_start + args.eval_every, args.steps)
                    val = validation_loss(run.model, validation_windows(run), run.accelerator, None)
                    curves[name][seed].append((step, val))
                    print(f"seed {seed} step {step:4d} {name:26s} val {val:.4f}", flush=True)
            for run in runs.values():
                run.accelerator.end_training()

    report(curves, seconds, args)


def mean_curve(per_seed: dict[int, list[tuple[int, float]]]) -> list[tuple[int, float, float]]:
    """(step, mean over seeds, spread = max - min over seeds)."""
    rows = zip(*per_seed.values())
    return [(points[0][0], statistics.mean(v for _, v in points), max(v for _, v in points) - min(v for _, v in points))
            for points in rows]  # fmt: skip


def report(curves: dict, seconds: dict, args: argparse.Namespace) -> None:
    means = {name: mean_curve(curves[name]) for name in curves}
    steps = [step for step, _, _ in means[args.recipes[0]]]
    print(f"\nvalidation loss (mean of {args.seeds} seeds, ablations {args.ablation_seeds}; spread max-min in "
          f"brackets), {args.val_batches} x 16 x 128 held-out tokens")  # fmt: skip
    print("| recipe | " + " | ".join(str(s) for s in steps) + " | s/step | vs gpt2 |")
    print("|---" * (len(steps) + 3) + "|")
    base_seconds = statistics.median(seconds["gpt2"]) if "gpt2" in seconds else None
    for name, rows in means.items():
        seeds = len(curves[name])
        cells = " | ".join(f"{v:.3f}" + (f" ({spread:.3f})" if seeds > 1 else "") for _, v, spread in rows)
        per_step = statistics.median(seconds[name])
        ratio = f"{per_step / base_seconds:.2f}x" if base_seconds else "-"
        print(f"| {name} | {cells} | {per_step:.3f} | {ratio} |")
    if "gpt2" in means:
        target = means["gpt2"][-1][1]
        print(f"\nGPT-2 recipe's final validation loss: {target:.4f} at step {args.steps}")
        for name, rows in means.items():
            reached = next((step for step, v, _ in rows if v <= target), None)
            share = f" ({100 * reached / args.steps:.0f}% of the steps)" if reached else ""
            print(f"  {name:26s} first eval at or below it: step {reached}{share}; final {rows[-1][1]:.4f}")
    (args.out / "results.json").write_text(json.dumps({"curves": curves, "seconds": seconds}, indent=1))
    plot(means, args.out / "recipe_compare.png")
    print(f"\nwrote {args.out / 'recipe_compare.png'} and {args.out / 'results.json'}")


def plot(means: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for name, rows in means.items():
        steps, values, spreads = zip(*rows)
        style = "-" if name in ("gpt2", "modern") else "--"
        line = ax.plot(steps[1:], values[1:], style, marker="o", markersize=3, label=name)[0]
        low = [v - s / 2 for v, s in zip(values[1:], spreads[1:])]
        high = [v + s / 2 for v, s in zip(values[1:], spreads[1:])]
        ax.fill_between(steps[1:], low, high, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("step (2048 tokens each)")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("GPT-2 recipe vs modern recipe, quickstart setting (python-stdlib, 4 x 128)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
