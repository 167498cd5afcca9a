"""HellaSwag examples/s: gpt_scratch.hellaswag against lm-evaluation-harness's HFLM, same model, data, batch size.

Both are timed end to end as a user runs them (reading the data file, tokenizing, scoring), in one run, and the
script checks that both give the same acc and acc_norm before printing the ratio. Target: >= 5x on CPU.

    python bench/hellaswag_speed.py [--preset tiny] [--limit 200] [--batch-size 32]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM, gpt2_tokenizer, save_model_dir  # noqa: E402
from gpt_scratch.hellaswag import evaluate_hellaswag, write_lm_eval_task  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "hellaswag_sample.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--data", default=str(SAMPLE))
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import lm_eval
    from lm_eval.tasks import TaskManager

    torch.manual_seed(0)
    model = GPTScratchForCausalLM(GPTScratchConfig.from_preset(args.preset)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_model_dir(model, Path(tmp) / "model")
        tasks = write_lm_eval_task(args.data, Path(tmp) / "tasks")

        start = time.perf_counter()
        reference = lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={model_dir},trust_remote_code=True,dtype=float32",
            tasks=["hellaswag_local"],
            task_manager=TaskManager(include_path=str(tasks)),
            batch_size=args.batch_size,
            device="cpu",
            limit=args.limit,
        )
        harness_seconds = time.perf_counter() - start

        start = time.perf_counter()
        loaded = GPTScratchForCausalLM.from_pretrained(model_dir)
        ours = evaluate_hellaswag(loaded, gpt2_tokenizer(), args.data, batch_size=args.batch_size, limit=args.limit)
        our_seconds = time.perf_counter() - start

    metrics = reference["results"]["hellaswag_local"]
    same = ours["acc"] == metrics["acc,none"] and ours["acc_norm"] == metrics["acc_norm,none"]
    n = ours["n"]
    print(f"model={args.preset} examples={n} batch_size={args.batch_size} threads={torch.get_num_threads()}")
    print(f"lm-eval HFLM  {n / harness_seconds:8.1f} examples/s  acc={metrics['acc,none']:.4f} "
          f"acc_norm={metrics['acc_norm,none']:.4f}")  # fmt: skip
    print(f"gpt_scratch   {n / our_seconds:8.1f} examples/s  acc={ours['acc']:.4f} acc_norm={ours['acc_norm']:.4f}")
    print(f"ratio ours/lm-eval {harness_seconds / our_seconds:.2f}x   identical acc/acc_norm: {same}")


if __name__ == "__main__":
    main()
