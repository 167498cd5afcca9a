"""The trainer's parts, which train.py puts together (its loop reads top to bottom there):

- ``step``: one optimizer step (gradient accumulation, clipping, the loss it trains with), FLOPs and MFU;
- ``optimizers``: AdamW, or Muon for the matrices and AdamW for the rest; each role's learning rate; the schedules;
- ``evaluation``: validation loss and bits per byte (each source of a mixture too), sampled continuations;
- ``muon``: the Muon optimizer (Newton-Schulz orthogonalised momentum);
- ``head_loss``: the LM head and its loss in chunks (the (tokens x vocabulary) logits never whole);
- ``cpu_loss``: the lean cross-entropy a CPU trains faster with;
- ``document_mask``: attention kept within each packed document;
- ``fp8``: the blocks' linear layers in FP8 (torchao).
"""

from .evaluation import (
    chat_samples,
    generate_samples,
    mixture_validation_metrics,
    run_validation,
    validation_loss,
    validation_metrics,
)
from .optimizers import (
    apply_schedule,
    build_optimizers,
    check_optimizer_fits_parallelism,
    describe_optimizers,
    lr_multiplier,
    parameter_roles,
    prepare_with_schedules,
    role_learning_rates,
    schedule_summary,
)
from .step import document_positions, flops_per_token, peak_flops, train_step, use_training_loss, weights_are_finite

__all__ = [
    "apply_schedule",
    "build_optimizers",
    "check_optimizer_fits_parallelism",
    "describe_optimizers",
    "document_positions",
    "flops_per_token",
    "chat_samples",
    "generate_samples",
    "lr_multiplier",
    "mixture_validation_metrics",
    "parameter_roles",
    "peak_flops",
    "prepare_with_schedules",
    "role_learning_rates",
    "run_validation",
    "schedule_summary",
    "train_step",
    "use_training_loss",
    "validation_loss",
    "validation_metrics",
    "weights_are_finite",
]
