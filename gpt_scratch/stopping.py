"""How the processes of a run stop together: a signal agreed on by all of them, and another process found gone.

- SIGTERM (schedulers, spot instances) and Ctrl-C are recorded, not obeyed at once (``stop_requests``): the loop
  finishes its step, and every process learns whether any was signalled in one all-reduce of a scalar
  (``agreed_stop_signal``), so all checkpoint after the same step, even when signalled apart.
- A process killed mid-run (kill -9, out of memory, its machine lost) shows in the others as a collective that fails
  with a transport error: they say so in one line with the resume (``peer_lost_line``), at once
  (``peer_loss_said_at_once``), before the launcher terminates them.

The wrapper that turns such a stop into the exit status a scheduler expects is ``gpt_scratch.requeue``.
"""

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# How a collective reports that another process of the run is gone (killed, out of memory, its machine lost).
PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL communicator was aborted")


class PeerLostError(RuntimeError):
    """Another process of the run is gone; the message was printed when it was found (``reported``)."""

    reported = True


@contextmanager
def stop_requests() -> Iterator[dict]:
    """SIGTERM and SIGINT recorded in ``requested["signal"]`` while the block runs; the caller's own handlers come
    back afterwards (a run may be called in a notebook or a test)."""
    requested = {"signal": None}
    previous = {sig: signal.signal(sig, lambda number, frame: requested.update(signal=number))
                for sig in (signal.SIGTERM, signal.SIGINT)}  # fmt: skip
    try:
        yield requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def agreed_stop_signal(device: torch.device, signal_number: int | None) -> int | None:
    """The signal any process received (one all-reduce of a scalar), so that all stop and checkpoint together."""
    received = torch.tensor([signal_number or 0], device=device)
    torch.distributed.all_reduce(received, op=torch.distributed.ReduceOp.MAX)
    return int(received.item()) or None


def peer_lost_line(error: RuntimeError) -> str | None:
    """The one line for a collective that failed because another process of the run is gone, or None."""
    if not any(words in str(error) for words in PEER_LOST):
        return None
    reason = str(error).strip().splitlines()[0][:300]
    return (
        f"error: another process of this run stopped ({reason}), and this one cannot go on alone. The checkpoints "
        "written so far are intact (each is complete or absent): rerun the same launch command with --resume auto"
    )


@contextmanager
def peer_loss_said_at_once(bar) -> Iterator[None]:
    """Say that another process is gone as soon as a collective reports it, while stop_requests still holds SIGTERM:
    the launcher (torchrun) terminates the surviving processes right after one dies, and one that waited to reach
    the command line's error handling was often killed before its line was printed."""
    try:
        yield
    except RuntimeError as error:
        if (line := peer_lost_line(error)) is None or os.environ.get("GPT_SCRATCH_TRACEBACK"):
            raise
        bar.close()
        print(line, file=sys.stderr, flush=True)
        raise PeerLostError(line) from None
