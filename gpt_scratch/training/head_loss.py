"""The LM head and its cross-entropy, a chunk of positions at a time: the loss and gradients of
``cross_entropy(softcap(hidden @ head.T)[:, :vocab_size], targets)`` without the (tokens x vocabulary) logits ever
existing whole.

With GPT-2's 50k vocabulary the logits are a training step's largest tensors: a 124M model's micro-batch of
64 x 1024 tokens gives 6.6 GB of them in bf16, then a soft-capped copy, an fp32 copy for the loss and the same again
for their gradients. Here each chunk's logits live only inside the forward, which also computes what backward would
(the gradient through the soft-cap and the two matmuls into the hidden states and the head), so the backward only
scales them by the incoming gradient: the plain head's FLOPs, a chunk's memory. (Liger Kernel's fused linear
cross-entropy does the same; transformers' Trainer asks for it with ``skip_logits``.)

    model.head_loss_function = chunked_head_cross_entropy   # what train.py does (chunked_head_loss: true)
"""

import torch

CHUNK_SIZE = 1024  # positions per chunk: 1024 x 50304 fp32 logits are 206 MB


class _ChunkedHeadCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of ``hidden (N, C) @ weight[:vocab_size].T`` against ``targets (N,)`` (-100 ignored),
    with the head's soft-cap; the gradients are computed in the forward, chunk by chunk."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, vocab_size: int, softcap: float | None, chunk_size: int):
        device = hidden.device.type
        # The matmuls run in the autocast dtype when autocast is on (as nn.Linear would), the softmax in fp32.
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        head = weight[:vocab_size].to(dtype)  # a padded vocabulary's extra rows are never scored
        total = hidden.new_zeros((), dtype=torch.float32)
        grad_weight, grad_hidden = None, []
        # Only the gradients autograd will ask for: none under no_grad (evaluation with skip_logits), none for a
        # frozen head (LoRA).
        wants_hidden, wants_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        # Each chunk's (chunk x vocabulary) tensors are updated in place: this runs without autograd, and on an
        # eager CPU every extra pass over them costs as much as a small model's layer.
        for start in range(0, hidden.shape[0], chunk_size):
            states = hidden[start : start + chunk_size].to(dtype)
            chunk_targets = targets[start : start + chunk_size]
            logits = (states @ head.T).float()
            if softcap is not None:  # cap * tanh(logits / cap), and its derivative 1 - tanh^2 for the backward
                capped = logits.div_(softcap).tanh_()
                softcap_slope = capped.square().neg_().add_(1)
                logits = capped.mul_(softcap)
            valid = (chunk_targets != -100).unsqueeze(1)
            safe_targets = chunk_targets.masked_fill(~valid.squeeze(1), 0).unsqueeze(1)
            row_max = logits.amax(dim=-1, keepdim=True)
            target_logits = logits.gather(1, safe_targets)
            grad = logits.sub_(row_max).exp_()  # softmax numerators, in the logits' own memory
            row_sum = grad.sum(dim=-1, keepdim=True)
            total = total + ((row_sum.log() + row_max - target_logits) * valid).sum()
            if not (wants_hidden or wants_weight):
                continue
            # d(loss)/d(logits) = softmax - onehot on the scored rows, zero on the ignored ones.
            grad = grad.mul_(valid / row_sum).scatter_add_(1, safe_targets, -valid.float())
            if softcap is not None:
                grad = grad.mul_(softcap_slope)
            grad = grad.to(dtype)
            if wants_hidden:
                grad_hidden.append(grad @ head)
            if wants_weight:
                update = grad.T @ states
                grad_weight = update.float() if grad_weight is None else grad_weight.add_(update)
        ctx.weight_rows = weight.shape[0]
        ctx.weight_dtype = weight.dtype
        ctx.save_for_backward(torch.cat(grad_hidden).to(hidden.dtype) if wants_hidden else None, grad_weight)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_total.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = torch.nn.functional.pad(grad_weight, (0, 0, 0, ctx.weight_rows - grad_weight.shape[0]))
            grad_weight = (grad_weight * grad_total).to(ctx.weight_dtype)
        return (
            grad_hidden,
            grad_weight,
            None,
            None,
            None,
            None,
        )


def chunked_head_cross_entropy(
    hidden_states: torch.Tensor,
    head_weight: torch.Tensor,
    labels: torch.Tensor | None,
    vocab_size: int,
    softcap: float | None = None,
    num_items_in_batch: int | torch.Tensor | None = None,
    ignore_index: int = -100,
    shift_labels: torch.Tensor | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> torch.Tensor:
    """transformers' causal-LM loss of the logits ``softcap(hidden_states @ head_weight.T)[..., :vocab_size]``
    (labels shifted inside, ``shift_labels`` taken as they are, ``num_items_in_batch`` the divisor under gradient
    accumulation), computed ``chunk_size`` positions at a time. Same value and gradients as the plain head + loss."""
    if shift_labels is None:
        shift_labels = torch.nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    targets = shift_labels.reshape(-1).to(hidden_states.device)
    if ignore_index != -100:
        targets = targets.masked_fill(targets == ignore_index, -100)
    hidden = hidden_states.reshape(-1, hidden_states.shape[-1])
    total = _ChunkedHeadCrossEntropy.apply(hidden, head_weight, targets, vocab_size, softcap, chunk_size)
    if num_items_in_batch is None:
        return total / (targets != -100).sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch
