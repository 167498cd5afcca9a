"""The docs test: tests/docs_runner.py runs every shell command and Python block of README.md and docs/ in a copy
of the repository, with the copy's code; here, its parser on samples, and the run itself (``python -m pytest -m
docs`` runs it alone)."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from docs_runner import DOC_PAGES, page_steps, readme_commands, shortened

ROOT = Path(__file__).resolve().parent.parent


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


def test_python_blocks_are_found_with_their_marked_lines_left_out():
    sample = "\n".join([
        "text", "```python", "import x", "x.push()  # [needs: network]", "print(x)", "```",
        "  ```python", "  # [needs: GPU]", "  y = 1", "  ```", "```bash", "python a.py", "```",
    ])  # fmt: skip
    found = page_steps(sample)
    assert [(c.line, c.text, c.needs, c.python) for c in found] == [
        (3, "import x\nprint(x)\n", None, True),
        (8, "y = 1\n", "GPU", True),
        (12, "python a.py", None, False),
    ]


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


@pytest.mark.docs
@pytest.mark.timeout(2400)  # a few minutes alone on 2 cores; much longer beside other work
def test_every_readme_and_docs_command_and_python_block_runs_as_written(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout (the docs test copies the tracked files)")
    clone = repository_copy(tmp_path / "clone")
    # One process in the copy runs every page with the copy's own code (tests/docs_runner.py).
    result = subprocess.run([sys.executable, "tests/docs_runner.py"], cwd=clone, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=2300)  # fmt: skip
    print(result.stdout[-6000:])
    assert result.returncode == 0, (result.stdout[-8000:] + "\n" + result.stderr[-4000:]).strip()


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
REPO_PATH = re.compile(r"(?<![\w./-])((?:runs|configs|data|docs|bench|scripts|tests)/[\w.*/-]*[\w*])")


def made_by(words: list[str]) -> list[str]:
    """The directories a documented command writes (``runs/x``): a training run's run_dir (its config's, or
    ``--run_dir``) and the tokenizer it trains, a tokenizer's ``--out``, a conversion's, export's or shard
    preparation's last argument."""
    made = []
    if "train.py" in words:
        at = words.index("train.py") + 1
        config = yaml.safe_load((ROOT / words[at]).read_text()) if words[at:] and words[at].endswith(".yaml") else {}
        flags = dict(zip(words[at:], words[at + 1 :]))
        made.append(flags.get("--run_dir", config.get("run_dir", "runs/defaults")))
        if config.get("tokenizer_vocab_size"):
            made.append(flags.get("--tokenizer", config.get("tokenizer")))
    elif "--out" in words:
        made.append(words[words.index("--out") + 1])
    elif {"gpt_scratch.convert", "gpt_scratch.export", "gpt_scratch.data"} & set(words):
        made.append(words[-1])
    return made


def test_every_link_and_every_path_a_docs_example_reads_resolves_or_is_made_by_a_command_the_page_names():
    """Images and links resolve from the page that holds them; a path of the repository in an example exists; a
    path under runs/ is made by a command on the page, or by one of an earlier page that this page names (its
    config file or the command itself), as the docs test runs the pages in order."""
    problems, makers = [], {}  # makers: a directory under runs/ -> the command that makes it
    for page in DOC_PAGES:
        text = (ROOT / page).read_text()
        for target in LINK.findall(text):
            path = target.split("#")[0]
            local = path and "://" not in path and not path.startswith("mailto:")
            if local and not ((ROOT / page).parent / path).exists():
                problems.append(f"{page}: the link {target} does not resolve from {Path(page).parent}/")
        steps = page_steps(text)
        for step in steps:
            if not step.python:
                for made in made_by(shlex.split(step.text)):
                    makers.setdefault(made.rstrip("/"), (page, step.text))
        for step in steps:
            for path in REPO_PATH.findall(step.text):
                if not path.startswith("runs/"):
                    if not any(ROOT.glob(path)):
                        problems.append(f"{page}:{step.line}: {path} is not in the repository")
                    continue
                maker = next((m for m in makers if path == m or path.startswith(m + "/")), None)
                if maker is None:
                    problems.append(f"{page}:{step.line}: nothing in the docs before it makes {path}")
                elif makers[maker][0] != page:
                    command = makers[maker][1]
                    config = next((w for w in shlex.split(command) if w.endswith(".yaml")), command)
                    if config not in text and command not in text:
                        problems.append(f"{page}:{step.line}: {path} is made by `{command}` "
                                        f"({makers[maker][0]}), which this page does not name")  # fmt: skip
    assert not problems, "\n".join(problems)
