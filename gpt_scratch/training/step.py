"""One training step, and what the loop measures around it: the loss it trains with, FLOPs and MFU, whether the
weights are still finite. bench/train_speed.py times the very same ``train_step`` against transformers' GPT-2."""

from contextlib import nullcontext

import torch
from accelerate import Accelerator

from ..modeling_gpt_scratch import GPTScratchForCausalLM
from ..train_config import TrainConfig
from .cpu_loss import use_lean_cpu_loss
from .document_mask import document_position_ids
from .head_loss import chunked_head_cross_entropy

# Dense bf16 peak of one device, for MFU. Unknown devices report no MFU rather than a wrong one.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "A10G": 125e12, "L4": 121e12, "4090": 165e12}


def use_training_loss(model: GPTScratchForCausalLM, config: TrainConfig, device: torch.device, compiled: bool) -> str:
    """Give ``model`` the loss train.py trains with and name it: the chunked head + loss (``chunked_head_loss``,
    unless an FP8 head must run as its layer), else on an eager CPU the lean cross-entropy, else transformers'."""
    if config.chunked_head_loss and not config.fp8_head:
        model.head_loss_function = chunked_head_cross_entropy
        return "chunked head + loss"
    if use_lean_cpu_loss(model, device, compiled):
        return "lean CPU cross-entropy"
    return "transformers' cross-entropy"


def flops_per_token(model: GPTScratchForCausalLM, seq_len: int) -> float:
    """6N + 12·L·H·Q·T (PaLM appendix B, as nanoGPT): matmul FLOPs of forward + backward per token.

    N counts the parameters that multiply: not a position table, nor a token embedding untied from the head (lookups).
    """
    c = model.config
    body = model.transformer
    lookups = body.wpe.weight.numel() if body.wpe is not None else 0
    if not c.tie_word_embeddings:
        lookups += body.wte.weight.numel()
    n_params = sum(p.numel() for p in model.parameters()) - lookups
    return 6 * n_params + 12 * c.n_layer * c.n_head * (c.n_embd // c.n_head) * seq_len


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS.items() if key in name), None)


def document_positions(input_ids: torch.Tensor, eot_token_id: int | None) -> dict[str, torch.Tensor]:
    """``position_ids`` that keep attention within documents when ``eot_token_id`` is given (document_mask)."""
    return {} if eot_token_id is None else {"position_ids": document_position_ids(input_ids, eot_token_id)}


def train_step(
    forward,
    model,
    data,
    optimizers: list,
    schedulers: list,
    accelerator,
    accumulation: int,
    grad_clip: float,
    eot_token_id: int | None = None,
):
    """One optimizer step over ``accumulation`` micro-batches; returns (mean loss on this process, grad norm).

    ``forward`` is the model to call (compiled or not), ``model`` the prepared one (for no_sync and clipping). Any
    transformers causal LM works: ``labels`` ask for a loss, ``shift_labels`` give the targets (the window's next
    tokens, so all T predictions of a (T + 1)-token window count). With ``eot_token_id`` (document_mask) tokens
    attend only within their document; a batch that brings its own position ids (packed conversations) uses them.

    Data whose targets leave tokens out (``counts_targets``: a chat fine-tune's loss on the answers) is averaged over
    the counted tokens of the whole step, every micro-batch and process together, as TRL and transformers' Trainer
    do: the step's micro-batches are read first and their counted tokens summed over the processes, and each
    micro-batch's summed loss is divided by that total (times the processes, whose gradients DDP averages).
    """
    counts_targets = getattr(data, "counts_targets", False)
    batches = [data.next_batch() for _ in range(accumulation)] if counts_targets else None
    divisor = None
    if counts_targets:
        counted = sum((batch[1] != -100).sum() for batch in batches).to(accelerator.device)
        divisor = accelerator.reduce(counted, reduction="sum").clamp(min=1) / accelerator.num_processes
    loss_sum = torch.zeros((), device=accelerator.device)
    for micro in range(accumulation):
        inputs, targets, *positions = batches[micro] if counts_targets else data.next_batch()
        inputs, targets = inputs.to(accelerator.device), targets.to(accelerator.device)
        # Gradients are averaged across processes only on the last micro-step of the accumulation.
        sync = nullcontext() if micro == accumulation - 1 else accelerator.no_sync(model)
        with sync, accelerator.autocast():
            if positions:
                positions = {"position_ids": positions[0].to(accelerator.device)}
            else:
                positions = document_positions(inputs, eot_token_id)
            outputs = forward(input_ids=inputs, labels=inputs, shift_labels=targets, use_cache=False,
                              num_items_in_batch=divisor, **positions)  # fmt: skip
            loss = outputs.loss if counts_targets else outputs.loss / accumulation
            accelerator.backward(loss)
        loss_sum += loss.detach()
    grad_norm = accelerator.clip_grad_norm_(model.parameters(), grad_clip) if grad_clip else None
    for optimizer, scheduler in zip(optimizers, schedulers):  # AdamW alone, or Muon and AdamW
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return loss_sum, grad_norm


@torch.no_grad()
def weights_are_finite(model: torch.nn.Module, accelerator: Accelerator | None = None) -> bool:
    """Every parameter finite (one reduction per tensor, one host sync), on every process.

    Under FSDP each process holds a shard (a DTensor): check the local shard, then agree across processes, so that
    all of them take the same branch (one raising while the others enter a collective would hang the run).
    """
    local = [p.to_local() if hasattr(p, "to_local") else p for p in model.parameters()]
    finite = torch.stack([torch.isfinite(p).all() for p in local]).all().float()
    if accelerator is not None and accelerator.num_processes > 1:
        finite = accelerator.reduce(finite.reshape(1), reduction="sum") == accelerator.num_processes
    return bool(finite)
