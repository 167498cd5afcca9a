"""Peak memory and time of one training step with each head + loss: transformers' standard loss on the full logits
(what a compiled or GPU run used), the lean CPU loss (what train.py used on a CPU without compile) and the chunked
head + loss (gpt_scratch.training.head_loss, train.py's default now). Each runs in a fresh process, so its peak
resident memory is its own; the same weights and batches in each, so the losses must agree.

    python bench/head_loss_memory.py                       # GPT-2 124M, modern recipe, T=1024, micro-batch 8 (CPU)
    python bench/head_loss_memory.py --preset tiny --seq-len 64 --micro-batch 4 --steps 3
    python bench/head_loss_memory.py --device cuda --bf16 --compile --micro-batch 64   # peak CUDA memory instead
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM  # noqa: E402
from gpt_scratch.train_config import TrainConfig  # noqa: E402
from gpt_scratch.training import build_optimizers, prepare_with_schedules, train_step  # noqa: E402
from gpt_scratch.training.cpu_loss import causal_lm_cross_entropy  # noqa: E402
from gpt_scratch.training.head_loss import chunked_head_cross_entropy  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import MODERN_MODEL, MODERN_OPTIMIZER, FixedBatches  # noqa: E402

VARIANTS = {"standard": "transformers' loss on full logits", "lean": "lean CPU loss", "chunked": "chunked head + loss"}


def peak_resident_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure(args) -> dict:
    """One variant, in this process: steps, then the peak memory and the median step time."""
    accelerator = Accelerator(cpu=args.device == "cpu", mixed_precision="bf16" if args.bf16 else "no")
    modern = {} if args.gpt2_arch else MODERN_MODEL
    config = GPTScratchConfig.from_preset(args.preset, **modern, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(config)
    if args.variant == "lean":
        model.loss_function = causal_lm_cross_entropy
    elif args.variant == "chunked":
        model.head_loss_function = chunked_head_cross_entropy
    train_config = TrainConfig(**({} if args.gpt2_arch else MODERN_OPTIMIZER))
    optimizers = build_optimizers(model, train_config, accelerator.device)
    model, optimizers, schedulers = prepare_with_schedules(accelerator, model, optimizers, lambda step: 1.0)
    forward = torch.compile(model) if args.compile else model
    generator = torch.Generator().manual_seed(1)
    windows = [torch.randint(0, 50257, (args.micro_batch, args.seq_len + 1), generator=generator) for _ in range(2)]
    data = FixedBatches([(w[:, :-1].contiguous(), w[:, 1:].contiguous()) for w in windows])
    before = peak_resident_bytes()
    losses, times = [], []
    for _ in range(args.steps):
        started = time.perf_counter()
        loss, _ = train_step(forward, model, data, optimizers, schedulers, accelerator, 1, 1.0)
        losses.append(loss.item())
        times.append(time.perf_counter() - started)
    result = {"losses": losses, "step_s": sorted(times[1:] or times)[len(times[1:] or times) // 2]}
    if accelerator.device.type == "cuda":
        result["peak_bytes"] = torch.cuda.max_memory_allocated()
    else:
        result["peak_bytes"], result["before_steps_bytes"] = peak_resident_bytes(), before
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="gpt2")
    parser.add_argument("--gpt2-arch", action="store_true", help="GPT-2's architecture and AdamW")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="steps per variant (the first allocates optimizer state)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--variants", default="standard,lean,chunked")
    parser.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)  # one child process's
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args)))
        return

    print(f"{args.preset} {'GPT-2 architecture' if args.gpt2_arch else 'modern recipe'} T={args.seq_len} "
          f"micro-batch={args.micro_batch} device={args.device} bf16={args.bf16} compile={args.compile} "
          f"threads={torch.get_num_threads()}")  # fmt: skip
    results = {}
    for variant in args.variants.split(","):
        child = ["--preset", args.preset, "--seq-len", str(args.seq_len), "--micro-batch", str(args.micro_batch),
                 "--steps", str(args.steps), "--device", args.device, "--variant", variant]  # fmt: skip
        child += [flag for flag, on in (("--gpt2-arch", args.gpt2_arch), ("--bf16", args.bf16),
                                        ("--compile", args.compile)) if on]  # fmt: skip
        output = subprocess.run([sys.executable, __file__, *child], check=True, capture_output=True, text=True).stdout
        results[variant] = json.loads(output.strip().splitlines()[-1])
        r = results[variant]
        memory = f"peak {r['peak_bytes'] / 2**30:6.2f} GiB"
        if "before_steps_bytes" in r:
            memory += f" (before the steps {r['before_steps_bytes'] / 2**30:.2f})"
        losses = " ".join(f"{loss:.6f}" for loss in r["losses"])
        print(f"{VARIANTS[variant]:36s} {memory} | step {r['step_s']:7.2f} s | losses {losses}", flush=True)
    if "chunked" in results and "standard" in results:
        ratio = results["chunked"]["peak_bytes"] / results["standard"]["peak_bytes"]
        print(f"peak memory chunked / standard {ratio:.3f}")


if __name__ == "__main__":
    main()
