"""The benchmark suite's items/s: gpt_scratch.tasks against lm-evaluation-harness's HFLM, on the same model, the same
items (made-up, in each task's schema: tests/task_data.py) and the same batch size, in one run.

Both are timed end to end as a user runs them (reading the files, building prompts, tokenizing, scoring); the script
checks that every metric of every task is identical before printing the ratio. Target: >= 5x on CPU (goal 10x).

    python bench/tasks_speed.py [--preset tiny] [--items 100] [--num_fewshot 0] [--batch-size 32] [--device cpu]

``--core``: CORE as gpt_scratch.tasks.core scores it (every task's items in one batched pass, shared contexts run
once) against nanochat's way (``core_eval.evaluate_example``: one item at a time, its options as one batch padded
with the BOS token, full logits, no shared context), on the same tokens and model, on a bundle made here in the real
layout (multiple choice 0- and 10-shot, schema 5-shot, language modelling 0-shot; or ``--bundle DIR``, the real one);
it checks every item's correctness is the same before printing the ratio. Target on CPU: >= 3x.

    python bench/tasks_speed.py --core [--preset mini] [--items 100] [--bundle DIR]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the made-up items the tests score

import torch  # noqa: E402
from task_data import write_task_data  # noqa: E402

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM, gpt2_tokenizer, save_model_dir  # noqa: E402
from gpt_scratch.tasks import TASKS, evaluate_tasks, write_lm_eval_tasks  # noqa: E402


def write_core_bundle(directory: Path, items: int) -> Path:
    """A bundle in the real layout, of made-up items the size of CORE's (HellaSwag-like multiple choice with long
    shared contexts, Winograd-like schema, LAMBADA-like language modelling)."""
    import json
    import random

    import yaml

    rng = random.Random(0)
    words = ["the", "a", "river", "stone", "cloud", "apple", "pear", "green", "small", "quick", "slow", "bright",
             "cold"]  # fmt: skip

    def say(low: int, high: int) -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(low, high)))

    kinds = [("mc_0", "multiple_choice", 0), ("mc_10", "multiple_choice", 10), ("schema_5", "schema", 5),
             ("lm_0", "language_modeling", 0)]  # fmt: skip
    (directory / "eval_data").mkdir(parents=True)
    for label, kind, _ in kinds:
        if kind == "multiple_choice":
            rows = [{"query": say(30, 60), "choices": [say(10, 25) for _ in range(4)], "gold": rng.randrange(4)}
                    for _ in range(items)]  # fmt: skip
        elif kind == "schema":
            rows = [{"context_options": [say(10, 20) for _ in range(2)], "continuation": say(5, 10),
                     "gold": rng.randrange(2)} for _ in range(items)]  # fmt: skip
        else:
            rows = [{"context": say(40, 80), "continuation": say(1, 2)} for _ in range(items)]
        (directory / "eval_data" / f"{label}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = [{"label": label, "icl_task_type": kind, "dataset_uri": f"{label}.jsonl", "num_fewshot": [shots]}
             for label, kind, shots in kinds]  # fmt: skip
    (directory / "core.yaml").write_text(yaml.safe_dump({"icl_tasks": tasks}))
    (directory / "eval_meta_data.csv").write_text("Eval Task,Random baseline\n" + "".join(
        f"{label},{25.0 if kind == 'multiple_choice' else 50.0 if kind == 'schema' else 0.0}\n"
        for label, kind, _ in kinds))  # fmt: skip
    return directory


@torch.no_grad()
def core_one_item_at_a_time(model, tokenizer, bundle: Path, max_per_task: int | None) -> dict[str, list[float]]:
    """nanochat's ``evaluate_example`` per item: the item's options as one right-padded batch, the full logits, the
    mean loss over each option's scored tokens (or the greedy check); the same tokens as ours."""
    from gpt_scratch.loglikelihood import model_max_length
    from gpt_scratch.tasks.core import item_requests, read_bundle, task_rows

    correct = {}
    for task in read_bundle(bundle):
        rows = task_rows(bundle, task, max_per_task)
        outcomes = []
        for index in range(len(rows)):
            options = item_requests(task, rows, index, tokenizer, model_max_length(model))
            sequences = [context + scored for context, scored in options]
            batch = torch.full((len(sequences), max(map(len, sequences))), tokenizer.eos_token_id)
            for row, sequence in enumerate(sequences):
                batch[row, : len(sequence)] = torch.tensor(sequence)
            logits = model(batch).logits
            losses, greedy = [], True
            for row, (context, scored) in enumerate(options):
                start, end = len(context), len(context) + len(scored)
                predicted = logits[row, start - 1 : end - 1]
                targets = batch[row, start:end]
                losses.append(torch.nn.functional.cross_entropy(predicted, targets).item())
                greedy = bool((predicted.argmax(-1) == targets).all())
            if task.task_type == "language_modeling":
                outcomes.append(float(greedy))
            else:
                outcomes.append(float(losses.index(min(losses)) == rows[index]["gold"]))
        correct[task.label] = outcomes
    return correct


def core_speed(args) -> None:
    from gpt_scratch.tasks.core import evaluate_core

    torch.manual_seed(0)
    model = GPTScratchForCausalLM(GPTScratchConfig.from_preset(args.preset)).eval()
    tokenizer = gpt2_tokenizer(model.config.n_positions)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(args.bundle) if args.bundle else write_core_bundle(Path(tmp) / "bundle", args.items)
        limit = args.items if args.bundle else None
        start = time.perf_counter()
        reference = core_one_item_at_a_time(model, tokenizer, bundle, limit)
        one_at_a_time = time.perf_counter() - start
        start = time.perf_counter()
        ours = evaluate_core(model, tokenizer, bundle, max_per_task=limit, batch_size=args.batch_size)
        batched = time.perf_counter() - start
    items = sum(map(len, reference.values()))
    same = all(ours["correct"][label] == outcomes for label, outcomes in reference.items())
    print(f"model={args.preset} CORE tasks={len(reference)} items={items} batch_size={args.batch_size} "
          f"threads={torch.get_num_threads()}")  # fmt: skip
    print(f"one item at a time (nanochat's way) {items / one_at_a_time:8.1f} items/s  ({one_at_a_time:.1f} s)")
    print(f"gpt_scratch.tasks.core              {items / batched:8.1f} items/s  ({batched:.1f} s)")
    print(
        f"ratio {one_at_a_time / batched:.2f}x   every item's correctness identical: {same}   CORE {ours['core']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--core", action="store_true", help="CORE against one item at a time (nanochat's way)")
    parser.add_argument("--bundle", default=None, help="--core: the real bundle's directory (default: made up)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--items", type=int, default=100, help="scored items per task")
    parser.add_argument("--num_fewshot", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    if args.core:
        core_speed(args)
        return

    import lm_eval
    from lm_eval.tasks import TaskManager

    torch.manual_seed(0)
    model = GPTScratchForCausalLM(GPTScratchConfig.from_preset(args.preset)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_model_dir(model, Path(tmp) / "model")
        data = write_task_data(Path(tmp) / "data", TASKS, scored=args.items, train=max(8, args.num_fewshot + 2))
        names = write_lm_eval_tasks(data, Path(tmp) / "tasks")

        start = time.perf_counter()
        reference = lm_eval.simple_evaluate(
            model="hf", model_args=f"pretrained={model_dir},trust_remote_code=True,dtype={args.dtype}", tasks=names,
            task_manager=TaskManager(include_path=str(Path(tmp) / "tasks")), num_fewshot=args.num_fewshot,
            batch_size=args.batch_size, device=args.device,
        )  # fmt: skip
        harness_seconds = time.perf_counter() - start

        start = time.perf_counter()
        dtype = getattr(torch, args.dtype)
        loaded = GPTScratchForCausalLM.from_pretrained(model_dir, dtype=dtype).to(args.device).eval()
        ours = evaluate_tasks(loaded, gpt2_tokenizer(), list(TASKS), data, args.num_fewshot, batch_size=args.batch_size)
        our_seconds = time.perf_counter() - start

    different = [f"{name} {metric}" for name, task in TASKS.items() for metric in task.metrics if metric != "perplexity"
                 and ours[name][metric] != reference["results"][f"{name}_local"][f"{metric},none"]]  # fmt: skip
    items = sum(ours[name]["n"] for name in TASKS)
    print(f"model={args.preset} tasks={len(TASKS)} items={items} num_fewshot={args.num_fewshot} batch_size="
          f"{args.batch_size} device={args.device} dtype={args.dtype} threads={torch.get_num_threads()}")  # fmt: skip
    print(f"lm-eval HFLM  {items / harness_seconds:8.1f} items/s  ({harness_seconds:.1f} s)")
    print(f"gpt_scratch   {items / our_seconds:8.1f} items/s  ({our_seconds:.1f} s)")
    print(f"ratio ours/lm-eval {harness_seconds / our_seconds:.2f}x   every acc/acc_norm identical: {not different}")
    if different:
        print("different:", ", ".join(different))


if __name__ == "__main__":
    main()
