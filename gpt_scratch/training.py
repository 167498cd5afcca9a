"""One training step and what the loop measures around it: optimizer, schedule, FLOPs, validation loss, samples.

train.py calls these in its loop; bench/train_speed.py times the very same ``train_step`` against transformers' GPT-2.
"""

import math
from contextlib import nullcontext

import torch
from accelerate import Accelerator

from .document_mask import document_position_ids
from .modeling_gpt_scratch import GPTScratchForCausalLM
from .train_config import TrainConfig

# Dense bf16 peak of one device, for MFU. Unknown devices report no MFU rather than a wrong one.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "A10G": 125e12, "L4": 121e12, "4090": 165e12}


def build_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on 2-D tensors (matmul weights, embeddings) only, as GPT-2 and nanoGPT train."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = device.type == "cuda"  # one kernel for the whole update
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), fused=fused)


def lr_multiplier(step: int, config: TrainConfig) -> float:
    """Linear warmup to lr, then cosine decay to min_lr at max_steps (as a factor of lr, for LambdaLR)."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return (config.min_lr + cosine * (config.lr - config.min_lr)) / config.lr


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


@torch.no_grad()
def validation_loss(model, batches: list[torch.Tensor], accelerator: Accelerator, eot_token_id: int | None) -> float:
    """Mean next-token loss over the fixed validation windows, each process taking every N-th batch (attention
    masked by document exactly as in training)."""
    model.eval()
    totals = torch.zeros(2, device=accelerator.device)  # summed loss, token count
    for batch in batches[accelerator.process_index :: accelerator.num_processes]:
        batch = batch.to(accelerator.device)
        inputs = batch[:, :-1]
        with accelerator.autocast():
            positions = document_positions(inputs, eot_token_id)
            loss = model(input_ids=inputs, shift_labels=batch[:, 1:], use_cache=False, **positions).loss
        totals += torch.stack(
            [loss.float() * batch[:, 1:].numel(), torch.tensor(batch[:, 1:].numel(), device=totals.device)]
        )
    totals = accelerator.reduce(totals, reduction="sum")
    model.train()
    return (totals[0] / totals[1]).item()


@torch.no_grad()
def generate_samples(model, tokenizer, config: TrainConfig, device: torch.device) -> list[str]:
    """A few sampled continuations of the configured prompts. Call it on every process: under FSDP each forward
    gathers weights from all of them."""
    model.eval()
    batch = tokenizer(config.sample_prompts, return_tensors="pt", padding=True).to(device)
    # Fixed seed, so samples compare across evals, in a forked RNG, so sampling never moves the training RNG (a
    # resumed run must draw exactly what the uninterrupted one would).
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        out = model.generate(**batch, max_new_tokens=config.sample_tokens, do_sample=True, top_k=50)
    model.train()
    return tokenizer.batch_decode(out, skip_special_tokens=True)


def train_step(
    forward,
    model,
    data,
    optimizer,
    scheduler,
    accelerator,
    accumulation: int,
    grad_clip: float,
    eot_token_id: int | None = None,
):
    """One optimizer step over ``accumulation`` micro-batches; returns (mean loss on this process, grad norm).

    ``forward`` is the model to call (compiled or not), ``model`` the prepared one (for no_sync and clipping). Any
    transformers causal LM works: ``labels`` ask for a loss, ``shift_labels`` give the targets (the window's next
    tokens, so all T predictions of a (T + 1)-token window count). With ``eot_token_id`` (document_mask) tokens
    attend only within their document.
    """
    loss_sum = torch.zeros((), device=accelerator.device)
    for micro in range(accumulation):
        inputs, targets = data.next_batch()
        inputs, targets = inputs.to(accelerator.device), targets.to(accelerator.device)
        # Gradients are averaged across processes only on the last micro-step of the accumulation.
        sync = nullcontext() if micro == accumulation - 1 else accelerator.no_sync(model)
        with sync, accelerator.autocast():
            positions = document_positions(inputs, eot_token_id)
            outputs = forward(input_ids=inputs, labels=inputs, shift_labels=targets, use_cache=False, **positions)
            loss = outputs.loss / accumulation
            accelerator.backward(loss)
        loss_sum += loss.detach()
    grad_norm = accelerator.clip_grad_norm_(model.parameters(), grad_clip) if grad_clip else None
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum, grad_norm


def apply_schedule(scheduler, optimizer: torch.optim.Optimizer, step: int, lr: float) -> None:
    """After loading a checkpoint: the schedule of the current settings, not the saved one, from ``step`` on.

    Loading restores the old lr into the optimizer's groups and the scheduler's ``base_lrs``; the multiplier function
    is this run's (it reads the current lr, min_lr, warmup_steps and max_steps). Put ``lr`` back as the base and set
    every group's lr to what the schedule gives at ``step``, exactly as LambdaLR computes it.
    """
    inner = getattr(scheduler, "scheduler", scheduler)  # Accelerate wraps the scheduler
    inner.base_lrs = [lr for _ in optimizer.param_groups]
    inner.last_epoch = step
    for group, factor in zip(optimizer.param_groups, inner.lr_lambdas):
        group["initial_lr"], group["lr"] = lr, lr * factor(step)
    inner._last_lr = [group["lr"] for group in optimizer.param_groups]


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
