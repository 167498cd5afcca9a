"""Optimizer steps/s of our Muon against ``torch.optim.Muon`` on the same model and gradients, in one run.

Ours runs the Newton–Schulz iteration in float32 on CPUs and in bfloat16 (torch's, bitwise) on CUDA; on a CPU
without bfloat16 instructions torch's bfloat16 matmuls are the slow part of a small model's step. The model is the
quickstart's (`mini`, the modern recipe: Muon on the blocks' matrices), so the ratio is the quickstart's gain.

    python bench/muon_speed.py                  # the quickstart's model on this machine's CPU
    python bench/muon_speed.py --model gpt2     # GPT-2 124M's matrices
    python bench/muon_speed.py --device cuda    # on a GPU both iterate in bfloat16: the ratio should be ~1
"""

import argparse
import time

import torch

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
from gpt_scratch.training import parameter_roles
from gpt_scratch.training.muon import Muon


def steps_per_second(optimizer_class, matrices: list[torch.Tensor], steps: int, device: torch.device) -> float:
    params = [torch.nn.Parameter(matrix.clone()) for matrix in matrices]
    optimizer = optimizer_class(params, lr=0.02, weight_decay=0.0)
    generator = torch.Generator(device).manual_seed(0)
    for param in params:
        param.grad = torch.randn(param.shape, generator=generator, device=device)
    optimizer.step()  # warm-up: state allocated, kernels loaded
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mini", help="a preset (mini is the quickstart's)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    config = GPTScratchConfig.from_preset(args.model, bias=False)
    model = GPTScratchForCausalLM(config)
    matrices = [param.detach().to(device) for _, param, role in parameter_roles(model) if role == "matrix"]
    print(f"{args.model}: {len(matrices)} matrices, {sum(m.numel() for m in matrices):,} parameters | {device} | "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    theirs = steps_per_second(torch.optim.Muon, matrices, args.steps, device)
    ours = steps_per_second(Muon, matrices, args.steps, device)
    print(f"torch.optim.Muon: {theirs:.2f} steps/s | ours ({Muon.iteration_dtype(matrices[0])}): {ours:.2f} steps/s "
          f"| ratio {ours / theirs:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
