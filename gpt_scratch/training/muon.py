"""Muon with its Newton–Schulz iteration in the dtype the device runs fast.

``torch.optim.Muon`` orthogonalises every update in bfloat16: right on GPUs, whose matrix units run bfloat16 at full
speed, and 10-15x slower than float32 on CPUs without bfloat16 instructions (no AVX-512 BF16 or AMX), where it was
two thirds of the quickstart's step on 2 cores. This is the same algorithm (momentum, Nesterov, the quintic
iteration with torch's coefficients, shape-adjusted learning rate, decoupled weight decay) and the same state
(``momentum_buffer``), so checkpoints move between the two; only the iteration's dtype follows the device: bfloat16
on CUDA (bitwise ``torch.optim.Muon``), float32 elsewhere (closer to the exact iteration, not further).

Under several processes (DDP: every process holds the same averaged gradients) each process runs the iteration for
its share of the matrices (matrix i on process i % world size) and broadcasts the results, as nanochat's and
modded-nanogpt's distributed Muon do: a node does the work once, not once per process. The momentum buffers are
updated on every process (elementwise, cheap), so every process holds the whole state and checkpoints are as before;
the weights are bitwise those of every process running every iteration.
"""

import torch
import torch.distributed as dist
from torch.optim._muon import _adjust_lr


def newton_schulz(update: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float,
                  dtype: torch.dtype) -> torch.Tensor:  # fmt: skip
    """The quintic Newton–Schulz iteration towards the orthogonal factor of ``update``, in ``dtype``."""
    a, b, c = coefficients
    x = update.to(dtype)
    tall = update.size(0) > update.size(1)
    if tall:  # iterate on the wide orientation: the Gram matrix is the smaller one
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm at most 1 (not in place: `to` may have returned `update` itself)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


class Muon(torch.optim.Muon):
    """``torch.optim.Muon``, its iteration in :meth:`iteration_dtype` of each parameter."""

    @staticmethod
    def iteration_dtype(param: torch.Tensor) -> torch.dtype:
        return torch.bfloat16 if param.is_cuda else torch.float32

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        rank, world = _process_share()
        for group in self.param_groups:
            lr, momentum = float(group["lr"]), group["momentum"]
            params, grads, buffers = [], [], []
            self._init_group(group, params, grads, buffers)  # torch's: its checks, and the state it keeps
            updates = []
            for index, (param, grad, buffer) in enumerate(zip(params, grads, buffers)):
                buffer.lerp_(grad, 1 - momentum)
                dtype = self.iteration_dtype(param)
                if index % world == rank:  # this process's share
                    update = grad.lerp(buffer, momentum) if group["nesterov"] else buffer
                    update = newton_schulz(update, group["ns_coefficients"], group["ns_steps"], group["eps"], dtype)
                    updates.append(update.contiguous())
                else:  # another process's: its result arrives below
                    updates.append(torch.empty(param.shape, dtype=dtype, device=param.device))
            if world > 1:
                handles = [
                    dist.broadcast(update, src=index % world, async_op=True) for index, update in enumerate(updates)
                ]
                for handle in handles:
                    handle.wait()
            for param, update in zip(params, updates):
                param.mul_(1 - lr * group["weight_decay"])
                param.add_(update, alpha=-_adjust_lr(lr, group["adjust_lr_fn"], param.shape))
        return loss


def _process_share() -> tuple[int, int]:
    """(this process's rank, how many share the iterations): (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
