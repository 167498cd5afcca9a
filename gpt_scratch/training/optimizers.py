"""The optimizers and their schedules: AdamW (or Muon for the matrices and AdamW for the rest), each parameter's
role and learning rate, warmup then cosine or warmup-stable-decay."""

import math

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from ..train_config import TrainConfig
from .muon import Muon


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


def schedule_summary(config: TrainConfig) -> str:
    """The schedule in words, for the startup line."""
    ends = f"to x{config.min_lr / config.lr:g} at step {config.max_steps}"
    if config.lr_schedule == "wsd":
        decay = f"constant, linear decay over the last {config.decay_steps} steps {ends}"
        return f"wsd: warmup {config.warmup_steps}, {decay}"
    return f"cosine: warmup {config.warmup_steps}, cosine decay {ends}"
