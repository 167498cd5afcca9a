"""Training tokens/s of train.py's step: GPTScratchForCausalLM against transformers' GPT2LMHeadModel.

Both models start from the same weights and run the very same `train_step` (Accelerate, AdamW, clipping) on the
same batches, alternating in one run, so the ratio holds on a noisy machine. Target on CPU: >= 1.2.
Ours is configured as the recipes train it: the vocabulary padded to 50304 rows, and the loss train.py trains with
(the chunked head + loss; ``--plain-head``: transformers' loss on the full logits). On a GPU, `--preset gpt2
--seq-len 1024 --micro-batch 64 --bf16 --compile` measures the 124M recipe: tokens/s, MFU and peak memory of each
model, both compiled.

    python bench/train_speed.py                       # 4 layers, 256 wide, T=128, micro-batch 8 (CPU)
    python bench/train_speed.py --preset gpt2 --seq-len 1024 --micro-batch 64 --bf16 --compile

``--modern`` compares the modern recipe (configs/speedrun-124m.yaml's architecture and its Muon + AdamW) with our GPT-2
architecture under AdamW, both ours: the cost per token of the modern recipe (target on the GPU: >= 0.9x).

    python bench/train_speed.py --modern --preset gpt2 --seq-len 1024 --micro-batch 64 --bf16 --compile

``--fp8`` compares our model with its blocks' linear layers in FP8 (torchao, ``fp8: true``) against the same model in
bf16 (a GPU with FP8 matmuls; with ``--modern``, the modern recipe's model).
"""

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from transformers import GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import step_options  # noqa: E402  (bench/common.py, beside this script)

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM  # noqa: E402
from gpt_scratch.modeling_gpt_scratch import state_dict_to_gpt2  # noqa: E402
from gpt_scratch.train_config import MODEL_OPTIONS, TrainConfig  # noqa: E402
from gpt_scratch.training import (  # noqa: E402
    build_optimizers,
    flops_per_token,
    peak_flops,
    prepare_with_schedules,
    train_step,
    use_training_loss,
)
from gpt_scratch.training.fp8 import convert_to_fp8, fp8_unavailable  # noqa: E402

# --modern: configs/speedrun-124m.yaml's model options and optimizer, read from the file so they cannot drift.
SPEEDRUN = yaml.safe_load((Path(__file__).resolve().parent.parent / "configs" / "speedrun-124m.yaml").read_text())
MODERN_MODEL = {k: SPEEDRUN[k] for k in MODEL_OPTIONS if k in SPEEDRUN and k not in ("n_layer", "n_head", "n_embd")}
MODERN_OPTIMIZER = {k: SPEEDRUN[k] for k in ("optimizer", "matrix_lr", "embedding_lr", "head_lr", "lr")}


class FixedBatches:
    """The same pre-drawn batches, in order, for every model."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches, self.index = batches, 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.batches[self.index % len(self.batches)]
        self.index += 1
        return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    step_options(parser, seq_len=128, micro_batch=8)
    parser.add_argument("--preset", default=None, help="a GPTScratchConfig preset instead of the 4x256 model")
    parser.add_argument("--accumulation", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["ours", "hf", "modern", "gpt2", "bf16", "fp8"], default=None)
    parser.add_argument("--modern", action="store_true", help="the modern recipe against our GPT-2 architecture")
    parser.add_argument("--fp8", action="store_true", help="ours in FP8 against ours in bf16")
    parser.add_argument("--plain-head", action="store_true", help="transformers' loss on the full logits for ours")
    parser.add_argument("--padded-vocab", type=int, default=50304, help="our padded_vocab_size (0: none)")
    args = parser.parse_args()

    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="bf16" if args.bf16 else "no")
    torch.backends.cuda.matmul.allow_tf32 = True
    shape = {"n_layer": 4, "n_head": 4, "n_embd": 256} if args.preset is None else {}
    config = GPTScratchConfig.from_preset(
        args.preset or "gpt2",
        **shape,
        padded_vocab_size=args.padded_vocab or None,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(0)
    ours = GPTScratchForCausalLM(config)
    modern = GPTScratchForCausalLM(GPTScratchConfig(**{**config.to_dict(), **MODERN_MODEL})) if args.modern else None
    gpt2_recipe = TrainConfig(chunked_head_loss=not args.plain_head)
    modern_recipe = TrainConfig(**MODERN_OPTIMIZER, chunked_head_loss=not args.plain_head)
    if args.fp8:
        if problem := fp8_unavailable(accelerator.device):
            parser.error(problem)
        base, recipe = (modern, modern_recipe) if args.modern else (ours, gpt2_recipe)
        converted = copy.deepcopy(base)
        convert_to_fp8(converted)
        contenders = {"bf16": (base, recipe), "fp8": (converted, dataclasses.replace(recipe, fp8=True))}
    elif args.modern:
        contenders = {"gpt2": (ours, gpt2_recipe), "modern": (modern, modern_recipe)}
    else:
        reference_config = config.to_gpt2_config()
        reference_config._attn_implementation = "sdpa"
        reference = GPT2LMHeadModel(reference_config)
        reference.load_state_dict(state_dict_to_gpt2(ours.state_dict(), config.vocab_size), strict=False)
        reference.tie_weights()
        contenders = {"hf": (reference, TrainConfig()), "ours": (ours, gpt2_recipe)}
    for name, (model, recipe) in contenders.items():
        if name != "hf":
            use_training_loss(model, recipe, accelerator.device, args.compile)  # as train.py does

    generator = torch.Generator().manual_seed(1)
    windows = [torch.randint(0, 50257, (args.micro_batch, args.seq_len + 1), generator=generator) for _ in range(8)]
    batches = [(w[:, :-1].contiguous(), w[:, 1:].contiguous()) for w in windows]

    runners = {}
    for name, (model, train_config) in contenders.items():
        if args.only and name != args.only:
            continue
        optimizers = build_optimizers(model, train_config, accelerator.device)
        model, optimizers, schedulers = prepare_with_schedules(accelerator, model, optimizers, lambda step: 1.0)
        forward = torch.compile(model) if args.compile else model
        runners[name] = (forward, model, optimizers, schedulers)

    peak_memory = {}

    def timed(name: str, steps: int) -> float:
        forward, model, optimizers, schedulers = runners[name]
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        data = FixedBatches(batches)
        start = time.perf_counter()
        for _ in range(steps):
            loss, _ = train_step(forward, model, data, optimizers, schedulers, accelerator, args.accumulation, 1.0)
        loss.item()  # wait for the device
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            peak_memory[name] = max(peak_memory.get(name, 0), torch.cuda.max_memory_allocated())
        return args.micro_batch * args.seq_len * args.accumulation * steps / (time.perf_counter() - start)

    for name in runners:
        timed(name, 3)  # warm-up (and compilation)
    rates = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name in runners:
            rates[name].append(timed(name, args.steps))

    device = accelerator.device
    print(f"config: n_layer={config.n_layer} n_embd={config.n_embd} n_head={config.n_head} T={args.seq_len} "
          f"micro-batch={args.micro_batch} accumulation={args.accumulation} device={device} "
          f"bf16={args.bf16} compile={args.compile} threads={torch.get_num_threads()}")  # fmt: skip
    peak = peak_flops(device)
    for name in runners:
        rate = statistics.median(rates[name])
        flops = flops_per_token(accelerator.unwrap_model(runners[name][1]), args.seq_len)
        mfu = f" | MFU {100 * flops * rate / peak:.1f}%" if peak else ""
        memory = f" | peak memory {peak_memory[name] / 2**30:.1f} GiB" if name in peak_memory else ""
        label = {"hf": "HF GPT-2", "gpt2": "ours, GPT-2 arch + AdamW", "modern": "ours, modern + Muon",
                 "bf16": "ours, bf16", "fp8": "ours, FP8 blocks"}.get(name, name)  # fmt: skip
        print(f"{label:26s} {rate:12,.0f} tokens/s{mfu}{memory}")
    if len(runners) == 2:
        reference_name, measured = contenders  # each comparison lists its reference first
        ratio = statistics.median(rates[measured]) / statistics.median(rates[reference_name])
        print(f"ratio {measured}/{reference_name} {ratio:.3f}x")


if __name__ == "__main__":
    main()
