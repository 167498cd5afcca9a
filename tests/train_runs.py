"""train.py as a user runs it: a subprocess on a tiny model, with helpers to read back what the run left."""

import json
import os
import subprocess
import sys
from pathlib import Path

from data_fixtures import make_documents, write_jsonl

from gpt_scratch.checkpoint import checkpoint_dirs

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "debug", "--seq_len", "32", "--micro_batch_size", "4", "--val_docs", "10", "--val_batches", "2",
        "--log_interval", "5", "--eval_interval", "1000", "--hellaswag_limit", "8", "--sample_tokens", "4",
        "--lr", "3e-3", "--min_lr", "3e-4", "--warmup_steps", "2", "--shuffle_buffer", "50"]  # fmt: skip
# The modern recipe on the command line: every model option, Muon with its own learning rates, warmup-stable-decay.
MODERN_ARGS = ["--position_embedding_type", "rope", "--norm_type", "rmsnorm", "--qk_norm", "true",
               "--activation_function", "relu2", "--final_logit_softcapping", "15", "--tie_word_embeddings", "false",
               "--bias", "false", "--zero_init_residual", "true", "--optimizer", "muon", "--matrix_lr", "0.02",
               "--embedding_lr", "0.01", "--head_lr", "0.004", "--lr_schedule", "wsd",
               "--decay_fraction", "0.5"]  # fmt: skip


def write_train_corpus(directory: Path) -> Path:
    """400 documents in 4 jsonl shards."""
    docs = make_documents(400, seed=11)
    for shard in range(4):
        write_jsonl(directory / f"part{shard}.jsonl", docs[shard * 100 : (shard + 1) * 100])
    return directory


def run_train(
    run_dir: Path,
    *args: str,
    nproc: int = 1,
    check: bool = True,
    timeout: int = 300,
    launcher: list[str] | None = None,
    env: dict[str, str] | None = None,
):
    """``python train.py`` (``nproc`` > 1: under torchrun; ``launcher``: e.g. ``accelerate launch`` arguments)."""
    command = [str(ROOT / "train.py"), "--run_dir", str(run_dir), *TINY, *args]
    if nproc > 1:
        port = str(29100 + (os.getpid() + len(str(run_dir))) % 400)
        command = ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", port, *command]
    if launcher:
        command = ["-m", "accelerate.commands.launch", *launcher, *command]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GPT_SCRATCH_TRACEBACK": "", **(env or {})}
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-8000:]
    return result


def trainer_state(run_dir: Path) -> dict:
    return json.loads((checkpoint_dirs(run_dir)[-1] / "trainer_state.json").read_text())
