"""The small-model benchmark suite (HellaSwag, ARC, PIQA, Winogrande, OpenBookQA, LAMBADA, BoolQ, COPA, SciQ), each
scored exactly as lm-evaluation-harness scores its task of the same name: ``evaluate_tasks``."""

from ..lazy import lazy_exports

# imported on first use: eval.py's ``--help`` answers before torch loads
__getattr__, __dir__ = lazy_exports(__name__, {
    ".definitions": ["GROUPS", "TASKS", "Task", "resolve_task_names"],
    ".lm_eval_tasks": ["write_lm_eval_tasks"],
    ".scoring": ["centered_accuracy", "evaluate_tasks", "task_items"],
})  # fmt: skip

__all__ = __dir__()
