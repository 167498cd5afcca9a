"""One training step and what the loop measures around it: optimizer, schedule, FLOPs, validation loss, samples.

train.py calls these in its loop; bench/train_speed.py times the very same ``train_step`` against transformers' GPT-2.
"""

import math
from contextlib import nullcontext

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from .cpu_loss import use_lean_cpu_loss
from .document_mask import document_position_ids
from .head_loss import chunked_head_cross_entropy
from .modeling_gpt_scratch import GPTScratchForCausalLM
from .muon import Muon
from .train_config import TrainConfig

# Dense bf16 peak of one device, for MFU. Unknown devices report no MFU rather than a wrong one.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "A10G": 125e12, "L4": 121e12, "4090": 165e12}


def parameter_roles(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter, str]]:
    """Trainable parameters in model order, each once, with its role: ``embedding`` (every nn.Embedding's table),
    ``head`` (an output layer untied from the embedding), ``matrix`` (every other weight of 2 or more dimensions:
    the blocks' projections) or ``gain`` (1-D: norm gains and biases)."""
    tables = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    head = model.get_output_embeddings()
    roles = []
    for name, param in model.named_parameters():  # a tied head is the embedding's own tensor, listed once
        if not param.requires_grad:
            continue
        if id(param) in tables:
            role = "embedding"
        elif head is not None and param is head.weight:
            role = "head"
        else:
            role = "matrix" if param.dim() >= 2 else "gain"
        roles.append((name, param, role))
    return roles


def role_learning_rates(config: TrainConfig) -> dict[str, float]:
    """The peak learning rate of each parameter role (``lr`` where a role's own is not set; Muon's matrices at its
    own scale, ``TrainConfig.matrix_learning_rate``)."""
    lrs = {
        "embedding": config.embedding_lr,
        "head": config.head_lr,
        "matrix": config.matrix_learning_rate,
        "gain": None,
    }
    return {role: lr if lr is not None else config.lr for role, lr in lrs.items()}


def build_optimizers(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> list[torch.optim.Optimizer]:
    """GPT-2's AdamW (weight decay on 2-D tensors only, as GPT-2 and nanoGPT train), or Muon on the blocks' matrices
    beside AdamW for embeddings, head and gains (modded-nanogpt, nanochat). One group per role, each with its
    learning rate (``role`` in the group names it)."""
    lrs = role_learning_rates(config)
    named = parameter_roles(model)
    optimizers = []
    if config.optimizer == "muon":
        matrices = [(name, param) for name, param, role in named if role == "matrix"]
        check_muon_parameters(matrices)
        muon_group = {"params": [param for _, param in matrices], "role": "matrix"}
        optimizers.append(Muon([muon_group], lr=lrs["matrix"], weight_decay=config.weight_decay,
                                momentum=config.muon_momentum, nesterov=True))  # fmt: skip
        named = [item for item in named if item[2] != "matrix"]
    groups: dict[str, dict] = {}
    for _, param, role in named:
        decay = 0.0 if role == "gain" else config.weight_decay
        groups.setdefault(role, {"params": [], "role": role, "lr": lrs[role], "weight_decay": decay})
        groups[role]["params"].append(param)
    # One pass over each tensor for the whole update (on CPUs too: 4.8x faster than the default for-each AdamW on
    # two 50304 x 256 tables, where an untied head doubles the optimizer's work).
    fused = device.type in ("cuda", "cpu")
    optimizers.append(torch.optim.AdamW(list(groups.values()), betas=(config.beta1, config.beta2), fused=fused))
    return optimizers


def use_training_loss(model: GPTScratchForCausalLM, config: TrainConfig, device: torch.device, compiled: bool) -> str:
    """Give ``model`` the loss train.py trains with and name it: the chunked head + loss (``chunked_head_loss``,
    unless an FP8 head must run as its layer), else on an eager CPU the lean cross-entropy, else transformers'."""
    if config.chunked_head_loss and not config.fp8_head:
        model.head_loss_function = chunked_head_cross_entropy
        return "chunked head + loss"
    if use_lean_cpu_loss(model, device, compiled):
        return "lean CPU cross-entropy"
    return "transformers' cross-entropy"


def check_muon_parameters(matrices: list[tuple[str, torch.nn.Parameter]]) -> None:
    """Muon orthogonalises whole 2-D matrices: refuse, by name, a tensor of another shape or a sharded one (FSDP)."""
    for name, param in matrices:
        if param.dim() != 2:
            raise ValueError(
                f"optimizer muon orthogonalises 2-D matrices, but {name} has shape {tuple(param.shape)}; "
                "train this model with --optimizer adamw"
            )
        if type(param).__name__ == "DTensor" or type(param.data).__name__ == "DTensor":
            raise ValueError(
                f"optimizer muon needs each matrix whole, but {name} is sharded (FSDP), so Muon would orthogonalise "
                "each process's shard instead; train with DDP (accelerate launch --multi_gpu) or --optimizer adamw"
            )


def check_optimizer_fits_parallelism(config: TrainConfig, distributed_type: DistributedType) -> None:
    """Before the model is wrapped: Muon orthogonalises whole matrices, which FSDP shards across processes."""
    if config.optimizer == "muon" and distributed_type == DistributedType.FSDP:
        raise ValueError(
            "optimizer muon needs each matrix whole, and FSDP shards them (Muon would orthogonalise each process's "
            "shard); train with DDP (accelerate launch --multi_gpu: a model Muon trains fits each GPU) or "
            "--optimizer adamw"
        )


def prepare_with_schedules(accelerator: Accelerator, model: torch.nn.Module, optimizers: list, multiplier) -> tuple:
    """``accelerator.prepare`` of the model and every optimizer with its LambdaLR schedule ``multiplier(step)``;
    returns (prepared model, optimizers, schedulers)."""
    schedulers = [torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier) for optimizer in optimizers]
    prepared, *rest = accelerator.prepare(model, *optimizers, *schedulers)
    return prepared, rest[: len(optimizers)], rest[len(optimizers) :]


def describe_optimizers(optimizers: list[torch.optim.Optimizer]) -> str:
    """One line: each optimizer, its groups' roles and learning rates."""
    parts = []
    for optimizer in optimizers:
        groups = ", ".join(f"{g.get('role', 'params')} lr {g['lr']:g}" for g in optimizer.param_groups)
        parts.append(f"{type(optimizer).__name__} ({groups})")
    return " + ".join(parts)


def lr_multiplier(step: int, config: TrainConfig) -> float:
    """The schedule as a factor of each group's learning rate (for LambdaLR): linear warmup, then a cosine decay to
    min_lr / lr at max_steps, or (wsd) constant until the last decay_fraction of the steps and a linear decay."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    floor = config.min_lr / config.lr
    if config.lr_schedule == "wsd":
        decay_start = config.max_steps - config.decay_steps
        progress = max(0, step - decay_start) / max(1, config.decay_steps)
        return 1.0 - min(progress, 1.0) * (1.0 - floor)
    progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return floor + cosine * (1.0 - floor)


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
def validation_metrics(
    model,
    batches: list[torch.Tensor],
    accelerator: Accelerator,
    eot_token_id: int | None,
    token_bytes: torch.Tensor | None = None,
) -> dict[str, float]:
    """``val_loss``: mean next-token loss (nats) over the fixed validation windows, each process taking every N-th
    batch (attention masked by document exactly as in training); with ``token_bytes`` (each id's length in bytes),
    ``val_bpb``: bits per byte, the summed nats / ln 2 / the UTF-8 bytes of the text the targets spell. Loss per token
    cannot compare two tokenizers (a token of one is not a token of the other); bits per byte can."""
    model.eval()
    totals = torch.zeros(3, device=accelerator.device)  # summed nats, targets, bytes
    lengths = token_bytes.to(accelerator.device) if token_bytes is not None else None
    for batch in batches[accelerator.process_index :: accelerator.num_processes]:
        batch = batch.to(accelerator.device)
        inputs, targets = batch[:, :-1], batch[:, 1:]
        with accelerator.autocast():
            positions = document_positions(inputs, eot_token_id)
            loss = model(input_ids=inputs, shift_labels=targets, use_cache=False, **positions).loss
        count = torch.tensor(float(targets.numel()), device=totals.device)
        spelled = lengths[targets].sum().float() if lengths is not None else torch.zeros_like(count)
        totals += torch.stack([loss.float() * count, count, spelled])
    totals = accelerator.reduce(totals, reduction="sum")
    model.train()
    metrics = {"val_loss": (totals[0] / totals[1]).item()}
    if lengths is not None:
        metrics["val_bpb"] = (totals[0] / math.log(2) / totals[2]).item()
    return metrics


def mixture_validation_metrics(
    model,
    batches: dict[str, list[torch.Tensor]],
    weights: dict[str, float],
    accelerator: Accelerator,
    eot_token_id: int | None,
    token_bytes: torch.Tensor | None = None,
) -> dict:
    """``validation_metrics`` of each source's held-out windows (``sources``: label -> its val_loss and val_bpb), and
    the mixture's: each figure's mean weighted by the sources' weights, as the training tokens are drawn."""
    sources = {label: validation_metrics(model, windows, accelerator, eot_token_id, token_bytes)
               for label, windows in batches.items()}  # fmt: skip
    mixture = {name: sum(weights[label] * figures[name] for label, figures in sources.items())
               for name in next(iter(sources.values()))}  # fmt: skip
    return {**mixture, "sources": sources}


def validation_loss(model, batches: list[torch.Tensor], accelerator: Accelerator, eot_token_id: int | None) -> float:
    """Mean next-token loss over the fixed validation windows (``validation_metrics``' ``val_loss``)."""
    return validation_metrics(model, batches, accelerator, eot_token_id)["val_loss"]


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
        out = model.generate(**batch, max_new_tokens=config.sample_tokens, do_sample=True, top_k=50,
                             temperature=config.sample_temperature)  # fmt: skip
    model.train()
    return tokenizer.batch_decode(out, skip_special_tokens=True)


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
    for optimizer, scheduler in zip(optimizers, schedulers):  # AdamW alone, or Muon and AdamW
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return loss_sum, grad_norm


def apply_schedule(scheduler, optimizer: torch.optim.Optimizer, step: int, lrs: dict[str, float]) -> None:
    """After loading a checkpoint: the schedule of the current settings, not the saved one, from ``step`` on.

    Loading restores the old learning rates into the optimizer's groups and the scheduler's ``base_lrs``; the
    multiplier function is this run's (it reads the current lr, min_lr, schedule, warmup_steps and max_steps). Put
    each group's role's learning rate (``lrs``, from role_learning_rates) back as its base and set its lr to what the
    schedule gives at ``step``, exactly as LambdaLR computes it.
    """
    inner = getattr(scheduler, "scheduler", scheduler)  # Accelerate wraps the scheduler
    inner.base_lrs = [lrs[group["role"]] for group in optimizer.param_groups]
    inner.last_epoch = step
    for group, base, factor in zip(optimizer.param_groups, inner.base_lrs, inner.lr_lambdas):
        group["initial_lr"], group["lr"] = base, base * factor(step)
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
