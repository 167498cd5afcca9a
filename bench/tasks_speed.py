"""The benchmark suite's items/s: gpt_scratch.tasks against lm-evaluation-harness's HFLM, on the same model, the same
items (made-up, in each task's schema: tests/task_data.py) and the same batch size, in one run.

Both are timed end to end as a user runs them (reading the files, building prompts, tokenizing, scoring); the script
checks that every metric of every task is identical before printing the ratio. Target: >= 5x on CPU (goal 10x).

    python bench/tasks_speed.py [--preset tiny] [--items 100] [--num_fewshot 0] [--batch-size 32] [--device cpu]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--items", type=int, default=100, help="scored items per task")
    parser.add_argument("--num_fewshot", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()

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
