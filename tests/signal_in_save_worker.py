"""``python train.py ARGS`` under torchrun, with one fault injected into rank 1 (or ``FAULT_RANK``) as it starts the
checkpoint of step 2, after the processes agreed that nobody had been signalled: ``FAULT=sigterm`` (the window in which
a signal used to make one process stop alone, the other left in a collective that never completed) or
``FAULT=sigkill`` (a process that dies: the other must say so in one line, not a gloo traceback)."""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import train  # noqa: E402

real_save = train.save


def save_with_a_signal(run, step: int) -> None:
    if step == 2 and run.accelerator.process_index == int(os.environ.get("FAULT_RANK", "1")):
        fault = {"sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}[os.environ["FAULT"]]
        os.kill(os.getpid(), fault)  # SIGTERM: train.py records it (stop_requests) and stops at a step's end
    real_save(run, step)


real_step, steps_taken = train.train_step, []


def step_then_die(*args, **kwargs):
    """``FAULT_AT=step``: the process dies in its third training step instead (rank 0 killed mid-step: torchrun then
    terminates the survivor at once)."""
    steps_taken.append(1)
    if len(steps_taken) == 3 and int(os.environ.get("RANK", "0")) == int(os.environ.get("FAULT_RANK", "1")):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_step(*args, **kwargs)


if os.environ.get("FAULT_AT") == "step":
    train.train_step = step_then_die
else:
    train.save = save_with_a_signal
train.cli(sys.argv[1:])
