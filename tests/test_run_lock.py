"""The run lock is the kernel's: exactly one of many racing runs gets it, and a dead run never blocks the next."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gpt_scratch.run_lock import LOCK_FILE, RunLock


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "over a dead run's lock"])
def test_of_racing_runs_exactly_one_wins(tmp_path, stale):
    """200 trials of 3 processes released at once. With a lock file left by a dead run (the case where a pid-based
    lock was taken over by two racers in 11 of 200 trials), as without one. The races run in a small interpreter of
    their own (tests/lock_race.py), which forks in a millisecond."""
    command = [sys.executable, str(Path(__file__).parent / "lock_race.py"), str(tmp_path), "200", "3"]
    result = subprocess.run(command + (["--stale"] if stale else []), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = json.loads(result.stdout)
    assert len(trials) == 200
    for number, trial in enumerate(trials):
        assert trial["winners"] == 1, f"trial {number}: {trial['winners']} winners"
        assert not trial["lock_left"]  # released


def test_a_lock_file_naming_a_live_pid_on_this_host_does_not_block(tmp_path):
    """A container restarted as pid 1 under the same hostname finds its old lock file naming a live pid (itself):
    what counts is whether anyone holds the lock, not what the file says."""
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "x"}))
    lock = RunLock(tmp_path).acquire()
    assert "ended without releasing its lock" in lock.note
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    with pytest.raises(ValueError, match=r"is in use by another run \(pid \d+ on .*wait for that run"):
        RunLock(tmp_path).acquire()  # a second claim, even from the same process, is refused while it is held
    lock.release()
    RunLock(tmp_path).acquire().release()


def test_a_killed_runs_lock_goes_with_it_though_a_forked_child_lives_on(tmp_path):
    """A run killed with SIGKILL while its DataLoader workers (forked children) still live: the next run on that
    run_dir starts at once, not when the orphans notice their parent is gone."""
    module = str(Path(__file__).parent.parent / "gpt_scratch" / "run_lock.py")
    holder = (
        "import importlib.util, os, sys, time\n"
        f"spec = importlib.util.spec_from_file_location('run_lock', {module!r})\n"
        "run_lock = importlib.util.module_from_spec(spec); spec.loader.exec_module(run_lock)\n"
        "lock = run_lock.RunLock(sys.argv[1]).acquire()\n"
        "if os.fork() == 0:  # the child, once the fork hooks have run in it, says its pid\n"
        "    lock.release()  # a no-op in the child: the parent's lock file stays\n"
        "    print(os.getpid(), flush=True); time.sleep(60); os._exit(0)\n"
        "time.sleep(60)\n"
    )  # fmt: skip
    process = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    child = int(process.stdout.readline())
    try:
        assert (tmp_path / LOCK_FILE).exists()
        with pytest.raises(ValueError, match="is in use by another run"):
            RunLock(tmp_path).acquire()
        process.kill()
        process.wait()
        os.kill(child, 0)  # the child is still alive
        lock = RunLock(tmp_path).acquire()
        assert "ended without releasing its lock" in lock.note
        lock.release()
    finally:
        process.kill()
        os.kill(child, signal.SIGKILL)
