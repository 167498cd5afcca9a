"""Muon with its Newton–Schulz iteration in the dtype the device runs fast.

``torch.optim.Muon`` orthogonalises every update in bfloat16: right on GPUs, whose matrix units run bfloat16 at full
speed, and 10-15x slower than float32 on CPUs without bfloat16 instructions (no AVX-512 BF16 or AMX), where it was
two thirds of the quickstart's step on 2 cores. This is the same algorithm (momentum, Nesterov, the quintic
iteration with torch's coefficients, shape-adjusted learning rate, decoupled weight decay) and the same state
(``momentum_buffer``), so checkpoints move between the two; only the iteration's dtype follows the device: bfloat16
on CUDA (bitwise ``torch.optim.Muon``), float32 elsewhere (closer to the exact iteration, not further).
"""

import torch
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
        for group in self.param_groups:
            lr, momentum = float(group["lr"]), group["momentum"]
            params, grads, buffers = [], [], []
            self._init_group(group, params, grads, buffers)  # torch's: its checks, and the state it keeps
            for param, grad, buffer in zip(params, grads, buffers):
                buffer.lerp_(grad, 1 - momentum)
                update = grad.lerp(buffer, momentum) if group["nesterov"] else buffer
                update = newton_schulz(update, group["ns_coefficients"], group["ns_steps"], group["eps"],
                                       self.iteration_dtype(param))  # fmt: skip
                param.mul_(1 - lr * group["weight_decay"])
                param.add_(update, alpha=-_adjust_lr(lr, group["adjust_lr_fn"], param.shape))
        return loss
