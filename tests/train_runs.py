"""train.py as a user runs it, on a tiny model, with helpers to read back what the run left.

A run is ``train.cli(argv)`` called in this process, with its output captured and its exit status taken from the
``SystemExit`` it raises, as the interpreter would: the same code path as ``python train.py ARGV`` without paying the
torch + transformers import again (about 8 s a run on 2 cores). A fresh process only where the process is the
subject: several processes (torchrun, accelerate launch), signals, kill -9, locks held by another process.
"""

import importlib
import io
import json
import os
import socket
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import torch
from accelerate.state import AcceleratorState
from data_fixtures import make_documents, write_jsonl

from gpt_scratch import cli
from gpt_scratch.checkpoint import checkpoint_dirs
from gpt_scratch.data import TextSource, prepare_shards
from gpt_scratch.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # train.py is a script beside the package, imported here as the module `train`
# conftest's session fixture tiny_tokenizer appends "--tokenizer DIR": its own 384-token BPE of the tiny corpus.
TINY = ["--model", "tiny", "--seq_len", "32", "--micro_batch_size", "4", "--tokens_per_step", "128", "--val_docs",
        "10", "--val_batches", "2", "--log_interval", "5", "--eval_interval", "1000", "--hellaswag_limit", "8",
        "--sample_tokens", "4", "--lr", "3e-3", "--min_lr", "3e-4", "--warmup_steps", "2", "--shuffle_buffer",
        "50"]  # fmt: skip
# The modern recipe on the command line: every model option, Muon with its own learning rates, warmup-stable-decay.
MODERN_ARGS = ["--position_embedding_type", "rope", "--norm_type", "rmsnorm", "--qk_norm", "true",
               "--activation_function", "relu2", "--final_logit_softcapping", "15", "--tie_word_embeddings", "false",
               "--bias", "false", "--zero_init_residual", "true", "--optimizer", "muon", "--matrix_lr", "0.02",
               "--embedding_lr", "0.01", "--head_lr", "0.004", "--lr_schedule", "wsd",
               "--decay_fraction", "0.5"]  # fmt: skip


def tiny_shards(corpus: Path, out_dir: Path, shard_tokens: int) -> list[Path]:
    """Token shards of ``corpus`` in the tiny runs' tokenizer (a run refuses shards of another one)."""
    tokenizer = load_tokenizer(TINY[TINY.index("--tokenizer") + 1])
    return prepare_shards(TextSource(str(corpus)), out_dir, shard_tokens, tokenizer)


def write_train_corpus(directory: Path) -> Path:
    """400 documents in 4 jsonl shards."""
    docs = make_documents(400, seed=11)
    for shard in range(4):
        write_jsonl(directory / f"part{shard}.jsonl", docs[shard * 100 : (shard + 1) * 100])
    return directory


def free_port() -> str:
    """A TCP port no process listens on now, from the kernel: launchers of tests running side by side (pytest-xdist
    workers) never pick the same one."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def run_train(
    run_dir: Path,
    *args: str,
    nproc: int = 1,
    check: bool = True,
    timeout: int = 300,
    launcher: list[str] | None = None,
    env: dict[str, str] | None = None,
    fresh_process: bool = False,
) -> subprocess.CompletedProcess:
    """``python train.py`` (``nproc`` > 1: under torchrun; ``launcher``: e.g. ``accelerate launch`` arguments); in
    this process unless several processes, a launcher or ``fresh_process`` ask for a real one."""
    argv = ["--run_dir", str(run_dir), *TINY, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GPT_SCRATCH_TRACEBACK": "", **(env or {})}
    if nproc == 1 and not launcher and not fresh_process:
        result = train_in_process(argv, env)
    else:
        command = [str(ROOT / "train.py"), *argv]
        if nproc > 1:
            command = ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", free_port(),
                       *command]  # fmt: skip
        if launcher:
            command = ["-m", "accelerate.commands.launch", *launcher, *command]
        result = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-8000:]
    return result


def train_in_process(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``train.cli(argv)`` in this process (see ``in_process``)."""
    import train

    return in_process(train.cli, argv, env, cwd)


# The package's command-line programs, as `python PROGRAM ARGS` names them: (module, its main(argv)).
PROGRAMS = {"eval.py": "eval", "-m gpt_scratch.export": "gpt_scratch.export", "-m gpt_scratch.convert":
            "gpt_scratch.convert", "-m gpt_scratch.data": "gpt_scratch.data.__main__", "-m gpt_scratch.tokenizer":
            "gpt_scratch.tokenizer.__main__", "-m gpt_scratch.educational": "gpt_scratch.educational",
            "-m gpt_scratch.requeue": "gpt_scratch.requeue"}  # fmt: skip


def run_command(
    program: str, *args: str, check: bool = True, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python PROGRAM ARGS`` for one of PROGRAMS (``eval.py``, ``-m gpt_scratch.convert``, ...), run in this process
    as its own would: its ``main`` under ``gpt_scratch.cli.run``, which turns a user's mistake into one line."""
    module = importlib.import_module(PROGRAMS[program])
    env = env or {**os.environ, "GPT_SCRATCH_TRACEBACK": ""}
    result = in_process(lambda argv: cli.run(lambda: module.main(argv)), list(args), env, cwd)
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-8000:]
    return result


def interpreter_warnings() -> None:
    """Warnings as a fresh interpreter shows them: each once per place, on stderr (pytest's own handling would
    collect them instead), deprecations hidden."""
    warnings.simplefilter("default")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter("ignore", category)
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
        warnings.formatwarning(message, category, filename, lineno, line)
    )


def in_process(
    entry: Callable[[list[str]], None], argv: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """A command-line entry point called here as its process would run it: ``env`` as the environment (and ``cwd``
    as the working directory), one intra-op thread (what OMP_NUM_THREADS=1 gives a fresh process, so that sums, and
    so weights, are bitwise those of a subprocess run), stdout and stderr captured, and the exit status the
    interpreter would give (an uncaught exception: its traceback, status 1)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, threads = dict(os.environ), os.getcwd(), torch.get_num_threads()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd or saved_cwd)
    torch.set_num_threads(1)
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr), warnings.catch_warnings():
            interpreter_warnings()
            try:
                entry(argv)
                code = 0
            except SystemExit as stop:  # as the interpreter exits: a number is the status, a message goes to stderr
                code = stop.code
                if code is not None and not isinstance(code, int):
                    print(code, file=sys.stderr)
                    code = 1
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        torch.set_num_threads(threads)
        AcceleratorState._reset_state(reset_partial_state=True)  # the next run builds its own Accelerator
    return subprocess.CompletedProcess([entry.__module__, *argv], code or 0, stdout.getvalue(), stderr.getvalue())


def trainer_state(run_dir: Path) -> dict:
    return json.loads((checkpoint_dirs(run_dir)[-1] / "trainer_state.json").read_text())
