"""An opt-in cross-entropy for eager CPU training: same values and gradients as transformers' causal-LM loss, fewer
passes over the (tokens x vocabulary) logits.

On a GPU, ``torch.compile`` fuses the standard loss into a few kernels, so nothing here is used there. On a CPU in
eager mode, each of log-softmax, NLL, their two backwards and the zero-filled NLL gradient is a separate pass over
a matrix that, with GPT-2's 50k vocabulary, dominates a small model's step. This loss keeps the softmax numerator
exp(logits - max) that its forward computes anyway and turns it into the gradient softmax - onehot in place.

    model.loss_function = causal_lm_cross_entropy   # what train.py does on CPU without --compile
"""

import torch


class _CrossEntropySum(torch.autograd.Function):
    """Summed cross-entropy of (N, V) logits against (N,) targets, -100 ignored, with an in-place backward."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits32 = logits.float()  # the loss is computed in fp32 even for bf16 logits
        row_max = logits32.amax(dim=-1, keepdim=True)  # (N, 1)
        numerator = (logits32 - row_max).exp_()  # (N, V), contiguous even when the logits are a padded view
        row_sum = numerator.sum(dim=-1, keepdim=True)  # (N, 1)
        valid = targets != -100
        safe_targets = targets.masked_fill(~valid, 0)
        target_logits = logits32.gather(1, safe_targets.unsqueeze(1)).squeeze(1)  # (N,)
        nll = (row_sum.log().squeeze(1) + row_max.squeeze(1) - target_logits) * valid
        ctx.numerator = numerator  # kept off save_for_backward: backward reuses its memory for the gradient
        ctx.logits_dtype = logits.dtype
        ctx.save_for_backward(safe_targets, valid, row_sum)
        return nll.sum()

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        targets, valid, row_sum = ctx.saved_tensors
        if ctx.numerator is None:
            raise RuntimeError("backward through causal_lm_cross_entropy can run only once per forward")
        scale = (grad_loss * valid).unsqueeze(1)  # (N, 1); ignored positions get no gradient
        grad = ctx.numerator.mul_(scale / row_sum)  # softmax * scale, in place
        ctx.numerator = None
        grad[torch.arange(grad.shape[0], device=grad.device), targets] -= scale.squeeze(1)
        return grad.to(ctx.logits_dtype), None


def causal_lm_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor | None,
    vocab_size: int,
    num_items_in_batch: int | torch.Tensor | None = None,
    ignore_index: int = -100,
    shift_labels: torch.Tensor | None = None,
    **kwargs,
) -> torch.Tensor:
    """Drop-in for transformers' ``ForCausalLMLoss`` (same arguments, same result): the mean next-token loss, or the
    sum divided by ``num_items_in_batch`` under gradient accumulation."""
    if shift_labels is None:
        shift_labels = torch.nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    targets = shift_labels.reshape(-1).to(logits.device)
    if ignore_index != -100:
        targets = targets.masked_fill(targets == ignore_index, -100)
    total = _CrossEntropySum.apply(logits.reshape(-1, vocab_size), targets)
    if num_items_in_batch is None:
        return total / (targets != -100).sum()
    return total / (num_items_in_batch.to(total.device) if torch.is_tensor(num_items_in_batch) else num_items_in_batch)


def use_lean_cpu_loss(model: torch.nn.Module, device: torch.device, compiled: bool) -> bool:
    """Give ``model`` the lean loss when it trains eagerly on a CPU (never on GPUs or under compile); say if it did."""
    if device.type != "cpu" or compiled:
        return False
    model.loss_function = causal_lm_cross_entropy
    return True
