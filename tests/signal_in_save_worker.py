"""``python train.py ARGS`` under torchrun, with one fault injected into rank 1 as it starts the checkpoint of step 2,
after the processes agreed that nobody had been signalled: ``FAULT=sigterm`` (the window in which a signal used to
make one process stop alone, the other left in a collective that never completed) or ``FAULT=sigkill`` (a process
that dies: the other must say so in one line, not a gloo traceback)."""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import train  # noqa: E402

real_save = train.save


def save_with_a_signal(run, step: int) -> None:
    if step == 2 and run.accelerator.process_index == 1:
        fault = {"sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}[os.environ["FAULT"]]
        os.kill(os.getpid(), fault)  # SIGTERM: train.py records it (stop_requests) and stops at a step's end
    real_save(run, step)


train.save = save_with_a_signal
train.cli(sys.argv[1:])
