"""Runs that cannot be fooled: the NaN guard saves nothing non-finite, resume refuses other run-defining settings
and applies the ones a user may change, one run per run directory, damaged checkpoints are skipped by name."""

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_runs import ROOT, TINY, run_command, run_train, tiny_shards, train_in_process

from gpt_scratch.checkpoint import checkpoint_dirs
from gpt_scratch.run_lock import LOCK_FILE


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def follow(advice: str) -> subprocess.CompletedProcess:
    """Run the command a divergence message prints, as a user would paste it: split as the shell splits it, and run
    as ``python train.py`` runs (``train.cli``, from the repository root)."""
    command = shlex.split(re.search(r"learning rates: (python train\.py .+)$", advice.strip()).group(1))
    assert command[:2] == ["python", "train.py"], command
    return train_in_process(command[2:], {**os.environ, "GPT_SCRATCH_TRACEBACK": ""}, cwd=ROOT)


def test_divergence_names_a_checkpoint_a_healthy_step_followed_and_its_advice_recovers(tmp_path, corpus):
    """--lr 1e6: step 1 leaves finite weights of size ~1e5, from which every step is NaN at any learning rate. That
    checkpoint is not good; the message says to start again with lower learning rates, and doing so trains to
    max_steps. Diverging later (a resume at --lr 1e6) names the resumed checkpoint, which a healthy step followed."""
    run_dir = tmp_path / "run"
    args = ["--run_dir", str(run_dir), *TINY, "--data", str(corpus), "--tokens_per_step", "128", "--hellaswag_data",
            "null", "--max_steps", "8", "--checkpoint_interval", "1", "--min_lr", "0", "--warmup_steps", "0",
            "--grad_clip", "0"]  # fmt: skip
    failed = run_train(run_dir, *args[2:], "--lr", "1e6", check=False)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr[-2000:]
    assert "No checkpoint was followed by a healthy step" in failed.stderr, failed.stderr[-2000:]
    assert not checkpoint_dirs(run_dir)  # the finite but ruined step-000001 is set aside, not resumable
    for checkpoint in run_dir.glob("checkpoints/diverged-step-*"):  # nothing non-finite is ever saved
        assert all(t.isfinite().all() for t in load_file(checkpoint / "model.safetensors").values()), checkpoint
    recovered = follow(failed.stderr)
    assert recovered.returncode == 0, recovered.stderr[-3000:]
    assert json.loads((checkpoint_dirs(run_dir)[-1] / "trainer_state.json").read_text())["step"] == 8

    # Healthy to step 8, then resumed at --lr 1e6 up to 12: the step from step-000008 is healthy, the next NaN.
    diverged = run_train(run_dir, *args[2:], "--max_steps", "12", "--lr", "1e6", "--resume", "auto", check=False)
    assert diverged.returncode == 1, diverged.stderr[-2000:]
    assert f"Last good checkpoint (a healthy step followed it): {run_dir}/checkpoints/step-000008" in diverged.stderr
    recovered = follow(diverged.stderr)
    assert recovered.returncode == 0 and "resumed from" in recovered.stdout, recovered.stderr[-3000:]
    assert json.loads((checkpoint_dirs(run_dir)[-1] / "trainer_state.json").read_text())["step"] == 12


def test_resume_refuses_settings_that_define_another_run_and_touches_nothing(tmp_path, corpus):
    run_dir = tmp_path / "run"
    args = ["--data", str(corpus), "--tokens_per_step", "128", "--hellaswag_data", "null", "--max_steps", "4"]
    run_train(run_dir, *args, "--checkpoint_interval", "2")
    before = snapshot(run_dir / "checkpoints")
    other = tmp_path / "other.jsonl"
    other.write_text((json.dumps({"text": "something else entirely " * 50}) + "\n") * 2)  # one to hold out
    for change, named in (
        (["--seq_len", "16"], "seq_len: 32 in the checkpoint, 16 now"),
        (["--n_embd", "128"], "n_embd: None in the checkpoint, 128 now"),
        (["--data", str(other), "--val_docs", "1"], "data: "),
    ):
        result = run_train(run_dir, *args, "--max_steps", "6", *change, "--resume", "auto", check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert "cannot resume" in result.stderr and named in result.stderr, result.stderr[-1000:]
        assert "size mismatch" not in result.stderr
    assert snapshot(run_dir / "checkpoints") == before
    # lr, min_lr and max_steps may change on resume: logged, and the schedule follows the new values.
    resumed = run_train(run_dir, *args, "--max_steps", "8", "--lr", "5e-3", "--log_interval", "1", "--resume", "auto")
    assert "lr: 0.003 -> 0.005" in resumed.stdout and "max_steps: 4 -> 8" in resumed.stdout
    logged = {
        int(s): float(lr) for s, lr in re.findall(r"step\s+(\d+)/8 \| loss [\d.]+ \| lr ([\d.e+-]+)", resumed.stdout)
    }
    assert sorted(logged) == [5, 6, 7, 8]
    for step, lr in logged.items():  # warmup 2 steps, then cosine from 5e-3 to min_lr 3e-4 over the remaining 6
        cosine = 0.5 * (1 + math.cos(math.pi * (step - 2) / 6))
        assert lr == pytest.approx(3e-4 + cosine * (5e-3 - 3e-4), rel=1e-2), (step, lr)


def test_a_second_run_on_a_busy_run_dir_is_refused_and_a_stale_lock_is_taken_over(tmp_path, corpus):
    run_dir = tmp_path / "run"
    args = ["--data", str(corpus), "--tokens_per_step", "128", "--hellaswag_data", "null", "--checkpoint_interval", "2"]
    command = [sys.executable, str(ROOT / "train.py"), "--run_dir", str(run_dir), *TINY, *args, "--max_steps", "3000"]
    first = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.time() + 120
        while not (run_dir / "checkpoints" / "step-000002").exists():
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.05)
        second = run_train(run_dir, *args, "--max_steps", "4", "--seed", "7", check=False)
        assert second.returncode == 1 and "is in use by another run (pid" in second.stderr, second.stderr[-2000:]
        assert first.poll() is None  # the first run goes on, its checkpoints its own
    finally:
        first.kill()
        first.wait()
    # The killed run held the lock only while it lived: the next run gets it and resumes.
    lock = json.loads((run_dir / LOCK_FILE).read_text())
    assert lock["pid"] == first.pid
    resumed = run_train(run_dir, *args, "--max_steps", "3000", "--resume", "auto", "--max_steps", "6", check=False)
    assert "ended without releasing its lock" in resumed.stdout, resumed.stderr[-2000:]
    assert not (run_dir / LOCK_FILE).exists()  # released at the end


def flip_last_byte(path: Path) -> None:
    """Same size, other content: the damage a size check cannot see (a bit flip, an overwrite in place)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "one byte changed", "its state's step changed"])
def test_a_damaged_newest_checkpoint_is_skipped_by_name_and_not_exported(tmp_path, corpus, damage):
    run_dir = tmp_path / "run"
    args = ["--data", str(corpus), "--tokens_per_step", "128", "--hellaswag_data", "null", "--checkpoint_interval", "2",
            "--keep_checkpoints", "3"]  # fmt: skip
    run_train(run_dir, *args, "--max_steps", "4")
    older, newest = checkpoint_dirs(run_dir)
    weights = newest / "model.safetensors"
    if damage == "truncated":  # a disk filled up, a copy cut short
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        problem = "model.safetensors is"
    elif damage == "one byte changed":
        flip_last_byte(weights)
        problem = "model.safetensors does not match its checksum"
    else:  # one byte of the file holding the others' checksums: "step": 4 -> 5 would skip a step of the schedule
        state = newest / "trainer_state.json"
        state.write_text(state.read_text().replace('"step": 4,', '"step": 5,'))
        problem = "trainer_state.json does not match its checksum"
    kept = snapshot(older)
    explicit = run_train(run_dir, *args, "--max_steps", "6", "--resume", str(newest), check=False)
    assert explicit.returncode == 1 and f"is damaged: {problem}" in explicit.stderr, explicit.stderr[-2000:]
    assert snapshot(older) == kept
    refused = run_command("-m gpt_scratch.export", str(newest), str(tmp_path / "out"), check=False)
    assert refused.returncode == 1 and f"is damaged: {problem}" in refused.stderr and not (tmp_path / "out").exists()
    run_command("-m gpt_scratch.export", str(older), str(tmp_path / "older"))
    resumed = run_train(run_dir, *args, "--max_steps", "6", "--resume", "auto")
    assert f"resumed from {older}" in resumed.stdout
    # A log line of the run, not a Python warning with a source line.
    assert f"\nresuming from {older}, skipping damaged newer checkpoints: step-000004 ({problem}" in resumed.stdout
    assert "Warning" not in resumed.stderr and "Removed shared tensor" not in resumed.stdout + resumed.stderr


def test_a_setting_newer_than_the_checkpoint_counts_as_its_default(tmp_path):
    from gpt_scratch.checkpoint import check_resumable
    from gpt_scratch.train_config import TrainConfig

    current = TrainConfig(lr=2e-3).to_dict()
    older = {k: v for k, v in TrainConfig().to_dict().items() if k != "document_mask"}  # written before the field
    (tmp_path / "trainer_state.json").write_text(json.dumps({"config": older, "step": 3}))
    assert check_resumable(tmp_path, current, 1) == {"lr": (1e-3, 2e-3)}
    with pytest.raises(ValueError, match="document_mask: False in the checkpoint, True now"):
        check_resumable(tmp_path, {**current, "document_mask": True}, 1)


@pytest.mark.parametrize("data", ["stream", "window_shuffle", "token_shards"])
def test_resume_with_a_smaller_micro_batch_continues_the_same_run(tmp_path, corpus, data):
    """What the out-of-memory advice says to do: half the micro-batch, twice the accumulation, the same tokens per
    step. The resumed run sees the same batches and ends where an uninterrupted run does (within float error)."""
    # A constant learning rate (min_lr = lr) after warmup: stopping at step 4 of max_steps 4 is then the same as
    # stopping at step 4 of max_steps 8.
    args = ["--data", str(corpus), "--tokens_per_step", "256", "--hellaswag_data", "null", "--checkpoint_interval",
            "4", "--micro_batch_size", "8", "--min_lr", "3e-3"]  # fmt: skip
    if data == "window_shuffle":
        args += ["--window_shuffle", "64"]
    if data == "token_shards":
        tiny_shards(corpus, tmp_path / "shards", shard_tokens=5000)
        args += ["--token_shards", str(tmp_path / "shards")]
    run_train(tmp_path / "straight", *args, "--max_steps", "8")
    run_train(tmp_path / "resumed", *args, "--max_steps", "4")
    resumed = run_train(tmp_path / "resumed", *args, "--max_steps", "8", "--micro_batch_size", "4", "--resume", "auto")
    assert "micro_batch_size: 8 -> 4" in resumed.stdout and "accumulation 2" in resumed.stdout, resumed.stdout[-2000:]
    straight = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    other = load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    for name in straight:
        torch.testing.assert_close(other[name], straight[name], rtol=1e-4, atol=1e-5, msg=name)


def test_moved_token_shards_resume_and_other_shards_are_refused(tmp_path, corpus):
    tiny_shards(corpus, tmp_path / "shards", shard_tokens=5000)
    args = ["--data", str(corpus), "--tokens_per_step", "128", "--hellaswag_data", "null", "--checkpoint_interval", "4",
            "--min_lr", "3e-3"]  # fmt: skip
    run_train(tmp_path / "straight", *args, "--token_shards", str(tmp_path / "shards"), "--max_steps", "8")
    run_train(tmp_path / "run", *args, "--token_shards", str(tmp_path / "shards"), "--max_steps", "4")
    (tmp_path / "shards").rename(tmp_path / "moved")
    tiny_shards(corpus, tmp_path / "shards", shard_tokens=3000)  # same data, other shards, at the run's own path
    shutil.copytree(tmp_path / "shards", tmp_path / "other")  # and at another path
    for other in ("shards", "other"):
        refused = run_train(tmp_path / "run", *args, "--token_shards", str(tmp_path / other), "--max_steps", "8",
                            "--resume", "auto", check=False)  # fmt: skip
        assert refused.returncode == 1 and "token_shards:" in refused.stderr, refused.stderr[-2000:]
        assert f"{tmp_path / other} (identity" in refused.stderr
    run_train(
        tmp_path / "run", *args, "--token_shards", str(tmp_path / "moved"), "--max_steps", "8", "--resume", "auto"
    )
    straight = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    moved = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert all(torch.equal(straight[name], moved[name]) for name in straight)  # bitwise: the same run
