"""Every shell command and Python block of README.md and of every page in docs/ runs as written, in this copy of the
repository, with this copy's code: the README first, then the pages in DOC_PAGES order, so that a page may use what
an earlier one made (the quickstart's model and tokenizer, runs/quickstart-gpt2/model).

    python tests/docs_runner.py        # in a copy made by tests/test_readme.py; exits 1 naming the page and line

A command or block is skipped only when the page itself marks it: ``[needs: ...]`` in its comment, in the comment
lines just above it, or in a comment that opens its block (then for the whole block): a GPU, the network, hours. In a
Python block a line so marked is left out (a push to the Hub), the rest runs as pasted. Long runs are shortened by
appending an override (``--max_steps``), the only change made to a command; a command that already ran word for
word (the README's and a page's copy of one) is not run again. ``python train.py``, ``python eval.py``, ``python -m
gpt_scratch.…`` and ``lm_eval`` commands run in this process through their command-line entry points (the same
arguments: a command then costs its work, not a fresh torch import); the rest through bash. Each Python block runs
as a user pastes it: in a process of its own, with nothing of it or of this project imported before it and stdin
closed (a prompt fails, as it would stop a script), forked from one that imported torch and transformers once.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# This copy's code, not an installed one: its package and train.py before any other (the editable install of the
# checkout this copy came from is found only after sys.path).
sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from train_runs import PROGRAMS, in_process, run_command, train_in_process  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# Pages in the order their commands run: a page's commands may use what an earlier page's made.
DOC_PAGES = ["README.md", "docs/training.md", "docs/tokenizer.md", "docs/data.md", "docs/model.md", "docs/learn.md",
             "docs/reliability.md", "docs/evaluation.md", "docs/ecosystem.md", "docs/benchmarks.md",
             "docs/testing.md"]  # fmt: skip
SHELL_FENCE = re.compile(r"^(\s*)```(bash|sh|shell)\s*$")
PYTHON_FENCE = re.compile(r"^(\s*)```python\s*$")
NEEDS = re.compile(r"\[needs: ([^\]]+)\]")

# Appended to shorten long runs (the last value of a flag wins in each of these programs), for the commands holding all
# of the words: the fewest steps and items that still run every stage (warmup, the schedule's decay, evaluation,
# samples, checkpoint and export; scoring and its output).
SHORTER = [
    (("train.py",), ["--max_steps", "4", "--warmup_steps", "1", "--tokens_per_step", "512", "--hellaswag_limit", "8",
                     "--val_batches", "2", "--sample_tokens", "8"]),
    (("gpt_scratch.educational",), ["--steps", "10"]),
    (("gpt_scratch.tokenizer", "train"), ["--max_bytes", "2000000"]),
    (("lm_eval",), ["--limit", "8"]),
    (("eval.py", "hellaswag"), ["--limit", "20"]),
    (("eval.py", "perplexity"), ["--max-tokens", "2000"]),
]  # fmt: skip


@dataclass
class Command:
    line: int  # 1-based line in README.md where the command starts
    text: str  # the command, continuation lines joined, comment removed
    needs: str | None  # why it is skipped, from its [needs: ...] marker
    python: bool = False  # a Python block (text: its code), not a shell command


def split_comment(line: str) -> tuple[str, str]:
    """(code, comment) of one shell line: the comment starts at a ``#`` outside quotes, after a space."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def fenced_blocks(text: str, fence: re.Pattern) -> Iterator[tuple[int, list[str]]]:
    """Every block ``fence`` opens: the 1-based line of its first line, and its lines without the fence's indent."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opened = fence.match(lines[index])
        index += 1
        if not opened:
            continue
        indent, first = len(opened.group(1)), index
        while not lines[index].strip().startswith("```"):
            index += 1
        yield first + 1, [line[indent:] for line in lines[first:index]]
        index += 1


def opening_needs(block: list[str]) -> re.Match | None:
    """The ``[needs: ...]`` marker of a comment that opens a block (it applies to the whole block)."""
    return NEEDS.search(split_comment(block[0])[1]) if block and block[0].lstrip().startswith("#") else None


def readme_commands(text: str) -> list[Command]:
    """Every command of every shell block, in order."""
    commands: list[Command] = []
    for first, block in fenced_blocks(text, SHELL_FENCE):
        comments, pending, start, opening = [], "", 0, opening_needs(block)
        for offset, line in enumerate(block):
            code, comment = split_comment(line)
            if not code and not pending:  # a comment line (or a blank one, which ends a comment run)
                comments = comments + [comment] if comment else []
            else:
                start = start or first + offset
                pending += code.removesuffix("\\").strip() + " "
                comments.append(comment)
                if not code.endswith("\\"):
                    needs = NEEDS.search(" ".join(comments)) or opening
                    commands.append(Command(start, pending.strip(), needs.group(1) if needs else None))
                    comments, pending, start = [], "", 0
    return commands


def shortened(command: str) -> str:
    words = shlex.split(command)
    for program, override in SHORTER:
        if set(program) <= set(words):
            assert "&&" not in words and "|" not in words, f"cannot shorten a compound command: {command}"
            return command + " " + shlex.join(override)
    return command


def run_here_or_in_bash(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``python train.py|eval.py|-m MODULE ARGS`` of the project's programs through their entry points in this
    process; anything else (launchers, pipes, other tools) through bash."""
    words = shlex.split(command)
    simple = not set(words) & {"&&", "||", "|", ";", ">", "<"}
    if words[0] == "python" and len(words) > 2 and simple:
        program, args = (f"-m {words[2]}", words[3:]) if words[1] == "-m" else (words[1], words[2:])
        if program == "train.py":
            return train_in_process(args, env, cwd)
        if program in PROGRAMS:
            return run_command(program, *args, check=False, cwd=cwd, env=env)
    if words[0] == "lm_eval" and simple:  # its console script's entry point (tests/test_hellaswag.py runs the script)
        return in_process(lm_eval_entry, words[1:], env, cwd)
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def lm_eval_entry(argv: list[str]) -> None:
    """What the ``lm_eval`` console script does: ``cli_evaluate()`` on ``sys.argv``."""
    from lm_eval.__main__ import cli_evaluate

    saved, sys.argv = sys.argv, ["lm_eval", *argv]
    try:
        cli_evaluate()
    finally:
        sys.argv = saved


def python_blocks(text: str) -> list[Command]:
    """Every Python block, as the code a user pastes: its lines marked ``[needs: ...]`` left out; a block whose first
    line is a comment with such a marker is skipped whole."""
    blocks: list[Command] = []
    for first, block in fenced_blocks(text, PYTHON_FENCE):
        kept = [line for line in block if not NEEDS.search(split_comment(line)[1])]
        opening = opening_needs(block)
        blocks.append(Command(first, "\n".join(kept) + "\n", opening.group(1) if opening else None, python=True))
    return blocks


def page_steps(text: str) -> list[Command]:
    """The page's shell commands and Python blocks, in the order they appear."""
    return sorted(readme_commands(text) + python_blocks(text), key=lambda step: step.line)


# A fork server: a fresh interpreter that imports torch, transformers, datasets once, and nothing of this project,
# then forks a process per block, which runs it as `python -c` would (its own namespace and argv, stdin at
# /dev/null, stdout and stderr to a file) and exits with its status.
BLOCK_SERVER = """
import json, os, sys, traceback
import accelerate, datasets, tiktoken, torch, transformers
from transformers.models.gpt2 import modeling_gpt2  # what makes `import gpt_scratch` slow, loaded lazily

for line in sys.stdin:
    request = json.loads(line)
    child = os.fork()
    if child == 0:
        status = 1
        try:
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            output = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(output, 1)
            os.dup2(output, 2)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv = ["-c"]
            exec(compile(request["code"], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
            status = 0
        except SystemExit as stop:
            if isinstance(stop.code, int) or stop.code is None:
                status = stop.code or 0
            else:
                print(stop.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    print(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]), flush=True)
"""


class BlockRunner:
    """Runs Python blocks in processes forked from BLOCK_SERVER: each pays for its own work and its own
    `import gpt_scratch`, not for importing torch again (3-4 s a block)."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.server = subprocess.Popen([sys.executable, "-c", BLOCK_SERVER], cwd=cwd, env=env, text=True,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip

    def run(self, code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
        """The block as pasted into a fresh interpreter: nothing of it or of this project imported before it (the
        names it uses are its own), stdin closed; its exit status and output as ``python -c`` would give them."""
        output = cwd / ".python-block-output.txt"
        request = {"code": code, "cwd": str(cwd), "env": env, "output": str(output)}
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        status = int(self.server.stdout.readline())
        printed = output.read_text(errors="replace")
        output.unlink()
        return subprocess.CompletedProcess(["python", "-c", code], status, printed, printed)

    def close(self) -> None:
        self.server.stdin.close()
        self.server.wait(timeout=60)


def run_pages(clone: Path) -> int:
    """Run every page's steps in ``clone``; print what ran, what was skipped and why, and the first failure."""
    import gpt_scratch

    assert Path(gpt_scratch.__file__).is_relative_to(clone), f"{gpt_scratch.__file__} is not this copy's package"
    pages = {page: page_steps((clone / page).read_text()) for page in DOC_PAGES}
    assert len(pages["README.md"]) > 5, "README.md's shell blocks were not found"
    bin_dir = str(Path(sys.executable).parent)  # python, pip, accelerate, torchrun, lm_eval of this environment
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"], "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "GPT_SCRATCH_TRACEBACK": "1"}  # fmt: skip
    blocks = BlockRunner(clone, env)
    try:
        return run_steps(pages, clone, env, blocks)
    finally:
        blocks.close()


def run_steps(pages: dict[str, list[Command]], clone: Path, env: dict[str, str], blocks: BlockRunner) -> int:
    ran, skipped, already, python_ran = {}, [], [], 0
    for page, steps in pages.items():
        for step in steps:
            where = f"{page}:{step.line}"
            shown = f"the Python block at {where}" if step.python else step.text
            if step.needs:
                skipped.append(f"{where} [{step.needs}] {shown}")
                continue
            if step.text in ran:
                already.append(f"{where} (as {ran[step.text]})")
                continue
            run = step.text if step.python else shortened(step.text)
            started = time.perf_counter()
            result = blocks.run(run, clone, env) if step.python else run_here_or_in_bash(run, clone, env)
            if result.returncode != 0:
                output = (result.stdout[-3000:] + "\n" + result.stderr[-5000:]).strip()
                what = f"the Python block at {where}:\n{run}" if step.python else f"{where}: `{run}`"
                print(f"FAILED {what} exited {result.returncode}:\n{output}")
                return 1
            ran[step.text] = f"{where} ({time.perf_counter() - started:.0f} s)"
            python_ran += step.python
    print(f"ran {len(ran)} commands and Python blocks:", *ran.values(), "already ran:", *already,
          "skipped, as marked:", *skipped, sep="\n  ")  # fmt: skip
    if len(ran) < 15 or python_ran < 5:
        print(f"FAILED: only {len(ran)} steps ran, {python_ran} of them Python blocks")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_pages(Path.cwd()))
