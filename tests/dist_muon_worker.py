"""Under torchrun: two Muon steps on the same matrices and gradients in every process (as DDP leaves them); writes
each process's count of Newton-Schulz iterations and rank 0's weights.

torchrun --nproc_per_node 2 tests/dist_muon_worker.py OUT_DIR
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from gpt_scratch.training import muon

SHAPES = [(8, 16), (16, 8), (8, 8), (12, 8), (4, 4)]


def muon_steps(steps: int = 2) -> list[torch.Tensor]:
    """The weights after ``steps`` Muon steps from fixed weights and gradients (the same in every process)."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in SHAPES]
    optimizer = muon.Muon(params, lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True)
    for _ in range(steps):
        for param in params:
            param.grad = torch.randn(param.shape, generator=generator)
        optimizer.step()
    return [param.detach().clone() for param in params]


def main() -> None:
    out = Path(sys.argv[1])
    dist.init_process_group("gloo")
    calls = []
    iteration = muon.newton_schulz
    muon.newton_schulz = lambda *args, **kwargs: calls.append(1) or iteration(*args, **kwargs)
    weights = muon_steps()
    (out / f"calls-{dist.get_rank()}.json").write_text(json.dumps(len(calls)))
    if dist.get_rank() == 0:
        torch.save(weights, out / "weights.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
