"""Races of real processes for one run lock: ``python tests/lock_race.py ROOT TRIALS RACERS [--stale]``.

Run by tests/test_run_lock.py in a fresh interpreter that loads ``gpt_scratch/run_lock.py`` by its path (it needs only
the standard library): forking a small process takes a millisecond where forking the test process, with torch
loaded, takes tens. Prints, as JSON, each trial's number of winners and whether the lock file was left behind.
"""

import importlib.util
import json
import multiprocessing
import socket
import sys
from pathlib import Path

spec = importlib.util.spec_from_file_location("run_lock", Path(__file__).parent.parent / "gpt_scratch" / "run_lock.py")
run_lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_lock)


def racer(run_dir: str, start, done, wins) -> None:
    start.wait()
    try:
        lock = run_lock.RunLock(run_dir).acquire()
    except ValueError:
        lock = None
    done.wait()  # the winner holds the lock until every racer has tried
    wins.put(lock is not None)
    if lock is not None:
        lock.release()


def race(root: Path, trials: int, racers: int, stale: bool) -> list[dict]:
    context = multiprocessing.get_context("fork")
    results = []
    for trial in range(trials):
        run_dir = root / str(trial)
        run_dir.mkdir(parents=True)
        if stale:  # the lock file a dead run left, naming a pid that is gone
            (run_dir / run_lock.LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": socket.gethostname()}))
        start, done, wins = context.Event(), context.Barrier(racers), context.Queue()
        processes = [context.Process(target=racer, args=(str(run_dir), start, done, wins)) for _ in range(racers)]
        for process in processes:
            process.start()
        start.set()
        for process in processes:
            process.join(timeout=30)
        winners = sum(wins.get(timeout=5) for _ in range(racers))
        results.append({"winners": winners, "lock_left": (run_dir / run_lock.LOCK_FILE).exists()})
    return results


if __name__ == "__main__":
    root, trials, racers = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(race(root, trials, racers, stale="--stale" in sys.argv)))
