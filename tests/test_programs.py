"""Every program a user starts, as the process they start: ``--help`` lists its options (rc 0) before torch or
transformers load, and a mistake is one ``error:`` line on stderr (rc 1) with nothing else there: no traceback, no
warning printed at import or at exit.

They run as real processes (their ``__main__`` lines, what libraries print on import, what they import, what happens
at interpreter exit are the subject), all at once.
"""

import argparse
import os
import subprocess
import sys

import pytest
from train_runs import PROGRAMS, ROOT, run_command

# (program, arguments of a mistake, the start of its one line)
MISTAKES = [
    ("train.py", ["--max_steps", "0"], "error: max_steps (0) must be positive"),
    ("eval.py", ["tasks", "--model", "./no-such-model", "--tasks", "hellaswag", "--data",
                 "hellaswag=data/hellaswag_sample.jsonl"], "error: model directory not found: ./no-such-model"),
    ("-m gpt_scratch.export", ["runs/no-such-run/checkpoints/step-000100", "out"],
     "error: checkpoint runs/no-such-run/checkpoints/step-000100 does not exist (runs/no-such-run holds none)"),
    ("-m gpt_scratch.convert", ["to-gpt2", "./no-such-model", "out"], "error: model directory not found"),
    ("-m gpt_scratch.data", ["prepare", "/no/such/corpus.jsonl", "out"], "error: no such file or directory"),
    ("-m gpt_scratch.tokenizer", ["train", "--data", "/no/such/corpus.jsonl", "--out", "out", "--vocab_size", "512"],
     "error: no such file or directory"),
    ("-m gpt_scratch.educational", ["--text", "/no/such/text.txt"], "error: no such file: /no/such/text.txt"),
    ("-m gpt_scratch.requeue", ["no-such-launcher", "train.py"], "error: no-such-launcher not found"),
]  # fmt: skip


def test_each_program_started_as_a_process_says_a_mistake_in_one_line_and_nothing_else(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "GPT_SCRATCH_TRACEBACK": ""}  # fmt: skip
    started = []
    for program, arguments, _ in MISTAKES:
        command = [sys.executable, *program.split(), *arguments]
        if program.endswith(".py"):
            command[1] = str(ROOT / program)
        started.append(subprocess.Popen(command, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))  # fmt: skip
    for process, (program, _, message) in zip(started, MISTAKES):
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 1, (program, stdout[-2000:], stderr[-2000:])
        assert stderr.splitlines() and len(stderr.splitlines()) == 1, (program, stderr)
        assert stderr.startswith(message), (program, stderr)
    assert not any(tmp_path.iterdir())  # no mistake wrote anything


@pytest.mark.parametrize(
    ("program", "arguments", "shown"),
    [
        ("train.py", ["--help"], ["usage: python train.py [CONFIG.yaml]", "  --lr (float, default 0.001)",
                                  "  --resume (str | None, default null)", "\"auto\" (newest complete checkpoint"]),
        ("train.py", ["-h"], ["usage: python train.py"]),
        ("eval.py", ["--help"], ["{hellaswag,perplexity,tasks,lm-eval-task}"]),
        ("eval.py", ["tasks", "--help"], ["arc_easy, arc_challenge, piqa", "auto: cuda when there is one"]),
        ("-m gpt_scratch.export", ["--help"], ["checkpoint", "out_dir", "--push_to_hub"]),
        ("-m gpt_scratch.convert", ["--help"], ["from-gpt2", "to-gpt2", "from-nanogpt"]),
        ("-m gpt_scratch.data", ["--help"], ["prepare"]),
        ("-m gpt_scratch.tokenizer", ["--help"], ["train"]),
        ("-m gpt_scratch.educational", ["--help"], ["--text", "--steps"]),
        ("-m gpt_scratch.requeue", ["--help"], ["python -m gpt_scratch.requeue torchrun --nproc_per_node 8"]),
        ("-m gpt_scratch.serve", ["--help"], ["python -m gpt_scratch.serve --host 127.0.0.1 --port 8000"]),
    ],
)  # fmt: skip
def test_every_program_answers_help_with_its_options_before_importing_torch(program, arguments, shown):
    """``-X importtime`` lists every module the process imported: neither torch nor transformers (seconds: help and
    a mistyped option answer at once, #43)."""
    command = [sys.executable, "-X", "importtime", *program.split(), *arguments]
    if program.endswith(".py"):
        command[3] = str(ROOT / program)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    for text in shown:
        assert text in result.stdout, (text, result.stdout[-3000:])
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines()}
    assert not imported & {"torch", "transformers", "datasets", "accelerate"}, sorted(imported)


def test_offline_a_program_says_so_at_once_and_names_what_it_could_not_get(tmp_path):
    """No network and HF_HUB_OFFLINE unset (the Hub's endpoint refuses): eval.py works from the cache at once, not
    after five retries per file (25 s), and the error names the model asked for, not the Hub client's words."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_HUB_OFFLINE", "HF_DATASETS"))}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "cache"), GPT_SCRATCH_TRACEBACK="")
    result = subprocess.run([sys.executable, str(ROOT / "eval.py"), "tasks", "--model", "gpt2", "--tasks",
                             "hellaswag,copa", "--data", "hellaswag=data/hellaswag_sample.jsonl", "--limit", "2"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Retrying" not in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    notice, error = result.stderr.splitlines()
    assert notice.startswith("the Hugging Face Hub cannot be reached: gpt2, copa's data from the local cache only")
    assert error.startswith("error: gpt2 is not in the local Hugging Face cache, and the Hub is offline")


def test_a_launcher_that_cannot_be_run_is_one_line_saying_why(tmp_path, capsys):
    """The requeue wrapper given a script without its run bit, a directory, or a script whose #! interpreter is
    missing: PermissionError's traceback, or "not found" for a file that is there."""
    from gpt_scratch import requeue

    not_executable, directory, no_interpreter = tmp_path / "train.py", tmp_path / "runs", tmp_path / "launch.sh"
    not_executable.write_text("print(1)\n")
    directory.mkdir()
    no_interpreter.write_text("#!/no/such/interpreter\n")
    no_interpreter.chmod(0o755)
    missing = "cannot be started: the interpreter its first line (#!) names is not found"
    for launcher, message in ((not_executable, "cannot be run (not executable)"),
                              (directory, "cannot be run (a directory)"), (no_interpreter, missing)):  # fmt: skip
        assert requeue.main([str(launcher), "--max_steps", "1"]) == 1
        printed = capsys.readouterr()
        assert printed.err.startswith(f"error: {launcher} {message}") and printed.err.count("\n") == 1, printed.err


def test_every_program_takes_both_spellings_of_each_option_and_its_help_shows_one_with_its_meaning():
    """eval.py took --num_fewshot but not --max_tokens, export --push-to-hub but not --push_to_hub (train.py's
    spelling): every option is now taken either way, --help shows the snake_case one with what it does and its
    default, and each subcommand's help says what it does."""
    import importlib

    for program, module_name in PROGRAMS.items():
        if program == "-m gpt_scratch.requeue":  # it takes a launcher's command line, not options of its own
            continue
        parser = importlib.import_module(module_name).build_parser()
        parsers = [parser] + [sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
                              for sub in action.choices.values()]  # fmt: skip
        for sub in parsers:
            if sub is not parser or len(parsers) == 1:
                assert sub.description, (program, sub.prog)
            for action in sub._actions:
                if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                    continue
                assert action.help, (program, sub.prog, action.dest)  # every option says what it does
                for name in action.option_strings:
                    assert "-" not in name[2:], (program, name)  # one spelling shown: train.py's
                    other = "--" + name[2:].replace("_", "-")
                    assert sub.spelled_as_known([other, "x"]) == [name, "x"], (program, other)
                    assert sub.spelled_as_known([f"{other}=x"]) == [f"{name}=x"], (program, other)
    # And as a user types them: the kebab spelling of the docs until now, through the real entry point.
    result = run_command("eval.py", "perplexity", "--model", "/no/such/model", "--max-tokens", "5", "--text-column",
                         "text", check=False)  # fmt: skip
    assert "error: model directory not found: /no/such/model" in result.stderr, result.stderr
