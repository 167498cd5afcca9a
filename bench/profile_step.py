"""Where a training step's time goes: train.py's step under torch.profiler for the GPT-2 recipe and the modern one
(configs/speedrun-124m.yaml's model and Muon + AdamW), the same shape and batches, each op's share of the step.

    python bench/profile_step.py                          # 4 layers, 256 wide, T=256, micro-batch 8 (CPU)
    python bench/profile_step.py --preset gpt2 --seq-len 1024 --micro-batch 64 --bf16 --compile   # on a GPU
    python bench/profile_step.py --plain-head             # with the full logits (transformers' loss), as before

Prints, per recipe, the ops sorted by self time (device time on a GPU) and writes each table to --out.
"""

import argparse
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM  # noqa: E402
from gpt_scratch.train_config import TrainConfig  # noqa: E402
from gpt_scratch.training import build_optimizers, prepare_with_schedules, train_step, use_training_loss  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import MODERN_MODEL, MODERN_OPTIMIZER, FixedBatches  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=None, help="a GPTScratchConfig preset instead of the 4x256 model")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps (after 2 warm-up steps)")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--plain-head", action="store_true", help="transformers' loss on the full logits")
    parser.add_argument("--rows", type=int, default=15, help="ops shown per recipe")
    parser.add_argument("--out", default=".", help="directory for the profile tables")
    args = parser.parse_args()

    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="bf16" if args.bf16 else "no")
    cuda = accelerator.device.type == "cuda"
    shape = {"n_layer": 4, "n_head": 4, "n_embd": 256} if args.preset is None else {}
    base = {**shape, "padded_vocab_size": 50304, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    recipes = {
        "gpt2": ({}, TrainConfig(chunked_head_loss=not args.plain_head)),
        "modern": (MODERN_MODEL, TrainConfig(**MODERN_OPTIMIZER, chunked_head_loss=not args.plain_head)),
    }
    generator = torch.Generator().manual_seed(1)
    windows = [torch.randint(0, 50257, (args.micro_batch, args.seq_len + 1), generator=generator) for _ in range(4)]
    batches = [(w[:, :-1].contiguous(), w[:, 1:].contiguous()) for w in windows]
    sort_key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    for name, (options, recipe) in recipes.items():
        torch.manual_seed(0)
        model = GPTScratchForCausalLM(GPTScratchConfig.from_preset(args.preset or "gpt2", **{**base, **options}))
        optimizers = build_optimizers(model, recipe, accelerator.device)
        model, optimizers, schedulers = prepare_with_schedules(accelerator, model, optimizers, lambda step: 1.0)
        loss_name = use_training_loss(accelerator.unwrap_model(model), recipe, accelerator.device, args.compile)
        forward = torch.compile(model) if args.compile else model
        data = FixedBatches(batches)
        for _ in range(2):  # warm-up: compilation, optimizer state
            train_step(forward, model, data, optimizers, schedulers, accelerator, 1, 1.0)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as trace:
            for _ in range(args.steps):
                loss, _ = train_step(forward, model, data, optimizers, schedulers, accelerator, 1, 1.0)
            loss.item()
        table = trace.key_averages().table(sort_by=sort_key, row_limit=args.rows)
        print(f"=== {name} recipe ({loss_name}), {args.steps} steps", flush=True)
        print(table, flush=True)
        Path(args.out, f"profile_{name}.txt").write_text(trace.key_averages().table(sort_by=sort_key, row_limit=60))


if __name__ == "__main__":
    main()
