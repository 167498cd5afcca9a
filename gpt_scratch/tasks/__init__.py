"""The small-model benchmark suite (HellaSwag, ARC, PIQA, Winogrande, OpenBookQA, LAMBADA, BoolQ, COPA, SciQ), each
scored exactly as lm-evaluation-harness scores its task of the same name: ``evaluate_tasks``."""

from .definitions import GROUPS, TASKS, Task, resolve_task_names
from .lm_eval_tasks import write_lm_eval_tasks
from .scoring import centered_accuracy, evaluate_tasks, task_items

__all__ = ["GROUPS", "TASKS", "Task", "centered_accuracy", "evaluate_tasks", "resolve_task_names", "task_items",
           "write_lm_eval_tasks"]  # fmt: skip
