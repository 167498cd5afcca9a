"""Every shell command of README.md and of every page in docs/ runs as written, in one copy of the repository: the
README first, then the pages in DOC_PAGES order, so that a page may use what an earlier one made (the quickstart's
model and tokenizer, runs/quickstart-gpt2/model).

A command is skipped only when the page itself marks it: ``[needs: ...]`` in its comment, in the comment lines just
above it, or in a comment that opens its block (then for the whole block): a GPU, the network, hours. Long runs are
shortened by appending an override (``--max_steps``), the only change made to a command; a command that already ran
word for word (the README's and a page's copy of one) is not run again. ``python train.py``, ``python eval.py``,
``python -m gpt_scratch.…`` and ``lm_eval`` commands run in this process through their command-line entry points
(the same arguments, the copy as working directory: a command then costs its work, not a fresh torch import); the
rest run through bash. A failure names the page and line. Run it alone with ``python -m pytest -m docs``.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from train_runs import PROGRAMS, in_process, run_command, train_in_process

ROOT = Path(__file__).resolve().parent.parent
# Pages in the order their commands run: a page's commands may use what an earlier page's made.
DOC_PAGES = ["README.md", "docs/training.md", "docs/tokenizer.md", "docs/data.md", "docs/model.md", "docs/learn.md",
             "docs/reliability.md", "docs/evaluation.md", "docs/ecosystem.md", "docs/benchmarks.md",
             "docs/testing.md"]  # fmt: skip
SHELL_FENCE = re.compile(r"^(\s*)```(bash|sh|shell)\s*$")
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


def readme_commands(text: str) -> list[Command]:
    """Every command of every shell block, in order."""
    commands: list[Command] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        fence = SHELL_FENCE.match(lines[index])
        index += 1
        if not fence:
            continue
        indent, comments, pending, start = len(fence.group(1)), [], "", 0
        opening = (
            NEEDS.search(split_comment(lines[index][indent:])[1]) if lines[index].lstrip().startswith("#") else None
        )
        while not lines[index].strip().startswith("```"):
            code, comment = split_comment(lines[index][indent:])
            if not code and not pending:  # a comment line (or a blank one, which ends a comment run)
                comments = comments + [comment] if comment else []
            else:
                start = start or index + 1
                pending += code.removesuffix("\\").strip() + " "
                comments.append(comment)
                if not code.endswith("\\"):
                    needs = NEEDS.search(" ".join(comments)) or opening
                    commands.append(Command(start, pending.strip(), needs.group(1) if needs else None))
                    comments, pending, start = [], "", 0
            index += 1
        index += 1
    return commands


def shortened(command: str) -> str:
    words = shlex.split(command)
    for program, override in SHORTER:
        if set(program) <= set(words):
            assert "&&" not in words and "|" not in words, f"cannot shorten a compound command: {command}"
            return command + " " + shlex.join(override)
    return command


def repository_copy(destination: Path) -> Path:
    """The files a fresh clone has (tracked, plus new files not ignored), without build outputs or runs."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


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


def test_readme_parser_finds_commands_markers_and_continuations():
    sample = "\n".join([
        "text", "```bash", "python a.py --x 1   # first", "# two nodes [needs: GPU]", "accelerate launch \\",
        "    train.py", "", "  ```", "```python", "print('not shell')", "```", "  ```sh",
        "  echo '# not a comment'  # [needs: network]", "  ```",
        "```bash", "# [needs: hours]", "python bench/a.py  # one", "python bench/b.py", "```",
    ])  # fmt: skip
    found = readme_commands(sample)
    assert [(c.line, c.text, c.needs) for c in found] == [
        (3, "python a.py --x 1", None),
        (5, "accelerate launch train.py", "GPU"),
        (13, "echo '# not a comment'", "network"),
        (17, "python bench/a.py", "hours"),
        (18, "python bench/b.py", "hours"),
    ]
    expected = "python train.py c.yaml --lr 1 --max_steps 4 --warmup_steps 1 --tokens_per_step 512 " \
        "--hellaswag_limit 8 --val_batches 2 --sample_tokens 8"  # fmt: skip
    assert shortened("python train.py c.yaml --lr 1") == expected


def test_every_docs_page_is_run_by_the_docs_test():
    assert sorted(DOC_PAGES[1:]) == sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))


@pytest.mark.docs
@pytest.mark.timeout(2400)  # a few minutes alone on 2 cores; much longer beside other work
def test_every_readme_and_docs_command_runs_as_written(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout (the docs test copies the tracked files)")
    clone = repository_copy(tmp_path / "clone")
    pages = {page: readme_commands((ROOT / page).read_text()) for page in DOC_PAGES}
    assert len(pages["README.md"]) > 5, "README.md's shell blocks were not found"
    bin_dir = str(Path(sys.executable).parent)  # python, pip, accelerate, torchrun, lm_eval of this environment
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"], "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "GPT_SCRATCH_TRACEBACK": "1"}  # fmt: skip
    ran, skipped, already = {}, [], []
    for page, commands in pages.items():
        for command in commands:
            where = f"{page}:{command.line}"
            if command.needs:
                skipped.append(f"{where} [{command.needs}] {command.text}")
                continue
            if command.text in ran:
                already.append(f"{where} (as {ran[command.text]})")
                continue
            run = shortened(command.text)
            started = time.perf_counter()
            result = run_here_or_in_bash(run, clone, env)
            if result.returncode != 0:
                output = (result.stdout[-3000:] + "\n" + result.stderr[-5000:]).strip()
                pytest.fail(f"{where}: `{run}` exited {result.returncode}:\n{output}")
            ran[command.text] = f"{where} ({time.perf_counter() - started:.0f} s)"
    print(f"ran {len(ran)} commands:", *ran.values(), "already ran:", *already, "skipped, as marked:", *skipped,
          sep="\n  ")  # fmt: skip
    assert len(ran) >= 15
