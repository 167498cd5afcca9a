"""Off the happy path, as a user meets it: each kind of case of docs/reliability.md run as the real process a user
starts (offline, tiny settings), its output classified. What the closing note of an edge-case round reports.

    python scripts/edge_cases.py [--only NAME ...] [--keep DIR]

A case is **correct** (it did what was asked), **clear** (refused in one `error:` line, or warned in a WARNING line,
saying what and how to fix), **unclear** (one line, but not the words expected), **traceback**, **silent** (rc 0
where a refusal or warning was due), or **data lost** (a file the user had is changed or gone). Prints one line a
case and the counts; exit 1 if any case is a traceback, silent or data lost.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "GPT_SCRATCH_TRACEBACK": ""}  # fmt: skip
S = ["configs/tiny.yaml", "--hellaswag_data", "null", "--max_steps", "6", "--warmup_steps", "1", "--log_interval", "1",
     "--eval_interval", "100", "--checkpoint_interval", "3", "--val_docs", "5"]  # fmt: skip


def run(*args: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def verdict(result, expected: str, where: str = "stderr") -> tuple[str, str]:
    """Classify a run that should stop (or warn) with ``expected`` in its output."""
    printed = result.stdout + result.stderr
    if "Traceback (most recent call last)" in printed:
        return "traceback", printed[printed.index("Traceback") :][-300:]
    text = result.stderr if where == "stderr" else printed
    if expected in text:
        return "clear", next(line for line in text.splitlines() if expected in line)[:240]
    if where == "stderr" and result.returncode == 0:
        return "silent", "rc 0"
    return "unclear", (result.stderr.strip().splitlines() or ["(nothing)"])[-1][:240]


def write_corpus(directory: Path, count: int = 120, seed: int = 0) -> Path:
    rng = random.Random(seed)
    words = ["the", "model", "reads", "text", "and", "learns", "which", "token", "comes", "next"]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(20, 80)))})
                            + "\n" for _ in range(count)))  # fmt: skip
    return path


def cases(work: Path):
    """(name, function returning (verdict, detail)) for every case."""
    corpus = write_corpus(work / "data")
    lines = corpus.read_text().splitlines(keepends=True)
    (work / "a.jsonl").write_text("".join(lines[:60]))
    (work / "b.jsonl").write_text("".join(lines[60:]))
    a, b = str(work / "a.jsonl"), str(work / "b.jsonl")
    base = work / "base"

    def base_run():
        if not (base / "model").exists():
            result = run("train.py", *S, "--data", str(corpus), "--run_dir", str(base), "--tokenizer", "gpt2")
            assert result.returncode == 0, result.stderr[-2000:]
        return base

    def export_over_saved_model():
        from transformers import GPT2Config, GPT2LMHeadModel

        mine = work / "myhf"
        GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, n_positions=16)).save_pretrained(mine)
        (mine / "README.md").write_text("---\ntitle: my own GPT-2 experiment\n---\n\nNotes: ...\n")
        before = snapshot(mine)
        result = run("-m", "gpt_scratch.export", str(base_run() / "checkpoints" / "step-000006"), str(mine))
        if snapshot(mine) != before:
            return "data lost", "the user's model directory was replaced"
        return verdict(result, "no export of this project wrote")

    def reordered_mixture_resume():
        shares = {}
        for name, order in (("same", {a: 0.7, b: 0.3}), ("reordered", {b: 0.3, a: 0.7})):
            run_dir = work / f"mix-{name}"
            first = run("train.py", *S, "--data", json.dumps({a: 0.7, b: 0.3}), "--run_dir", str(run_dir),
                        "--max_steps", "10", "--checkpoint_interval", "5")  # fmt: skip
            again = run("train.py", *S, "--data", json.dumps(order), "--run_dir", str(run_dir), "--max_steps", "16",
                        "--resume", "auto")  # fmt: skip
            if first.returncode or again.returncode:
                return verdict(again, "(a successful resume)")
            state = json.loads(sorted((run_dir / "checkpoints").iterdir())[-1].joinpath("trainer_state.json")
                               .read_text())  # fmt: skip
            shares[name] = dict(state["history"]["drawn"][-1][1])
        if shares["same"] != shares["reordered"]:
            return "silent", f"drew {shares['reordered']} against {shares['same']} in the original order"
        return "correct", f"drawn as in the original order: {shares['same']}"

    def overflowing_weights():
        result = run("train.py", *S, "--data", json.dumps({b: 1.5e308, a: 5e307}), "--run_dir", str(work / "ovf"),
                     "--max_steps", "2")  # fmt: skip
        if result.returncode == 0 and "75%" in result.stdout and "25%" in result.stdout:
            return "correct", "75% / 25%"
        return verdict(result, "75%")

    def duplicate_mapping_key():
        return verdict(run("train.py", *S, "--data", f"{{{a}: 0.5, {a}: 0.5, {b}: 1}}", "--run_dir",
                           str(work / "dup")), "given twice in one mapping")  # fmt: skip

    def empty_init_from():
        return verdict(run("train.py", *S, "--data", str(corpus), "--init_from", "", "--run_dir", str(work / "e")),
                       "--init_from is given an empty value")  # fmt: skip

    def random_bytes_source():
        noise = work / "noise"
        noise.mkdir(exist_ok=True)
        for index in range(12):
            (noise / f"{index}.txt").write_bytes(os.urandom(3000))
        result = run("train.py", *S, "--data", json.dumps({f"{noise}/*.txt": 0.5, str(corpus): 0.5}), "--run_dir",
                     str(work / "noise-run"), "--max_steps", "1")  # fmt: skip
        return verdict(result, "are not text (undecodable bytes or control characters)", where="all")

    def damaged_directory(name: str, damage) -> Path:
        directory = work / name
        if not directory.exists():
            shutil.copytree(base_run() / "model", directory)
            (directory / ".gpt-scratch-export.json").unlink(missing_ok=True)
            damage(directory)
        return directory

    def truncate(directory: Path):
        weights = directory / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    def hostile_pickle(directory: Path):
        (directory / "model.safetensors").unlink()
        target = str(directory / "pytorch_model.bin")
        code = ("import torch, os\nclass X:\n    def __reduce__(self): return (os.system, ('touch PWNED',))\n"
                f"torch.save({{'w': torch.zeros(2), 'x': X()}}, {target!r})\n")  # fmt: skip
        subprocess.run([sys.executable, "-c", code], check=True, env=ENV)

    def loads(kind: str, damage, expected: str, program: str):
        def case():
            directory = damaged_directory(kind, damage)
            if program == "init_from":
                result = run("train.py", *S, "--data", str(corpus), "--init_from", str(directory), "--run_dir",
                             str(work / f"from-{kind}"))  # fmt: skip
            elif program == "perplexity":
                result = run("eval.py", "perplexity", "--model", str(directory), "--data", str(corpus))
            else:  # the task's data given (a file in COPA's schema), so that the model is what is loaded
                copa = work / "copa.jsonl"
                copa.write_text(
                    "".join(
                        json.dumps(
                            {
                                "premise": "The man fell.",
                                "choice1": "He slipped.",
                                "choice2": "He sang.",
                                "question": "cause",
                                "idx": i,
                                "label": 0,
                            }
                        )
                        + "\n"
                        for i in range(4)
                    )
                )
                result = run("eval.py", "tasks", "--model", str(directory), "--tasks", "copa", "--data",
                             f"copa={copa}", "--num_fewshot", "0")  # fmt: skip
            if (ROOT / "PWNED").exists():
                return "data lost", "the pickle ran its code"
            if "weights_only=False" in result.stdout + result.stderr:
                return "unclear", "advises weights_only=False"
            return verdict(result, expected)

        return case

    def not_json_config(directory: Path):
        (directory / "config.json").write_text('{\n  "model_type": "gpt_scratch",\n}\n')

    def requeue_case(mode: str):
        def case():
            run_dir = work / f"requeue-{mode}"
            command = [sys.executable, "-m", "gpt_scratch.requeue", sys.executable, "-m", "torch.distributed.run",
                       "--nproc_per_node", "2", "train.py", *S, "--data", str(corpus), "--run_dir", str(run_dir),
                       "--max_steps", "400"]  # fmt: skip
            process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True)  # fmt: skip
            from gpt_scratch.requeue import _children, run_processes

            deadline = time.time() + 240
            while (not (run_dir / "checkpoints" / "step-000003").exists() if mode == "every process"
                   else not run_processes(process.pid)):  # fmt: skip
                if process.poll() is not None or time.time() > deadline:
                    return "unclear", "the run ended before it could be signalled"
                time.sleep(0.05)
            targets, tree = [process.pid], _children()
            for parent in targets if mode == "every process" else []:
                targets.extend(tree.get(parent, []))
            for pid in targets:
                os.kill(pid, signal.SIGTERM)
            output, _ = process.communicate(timeout=240)
            if "Traceback" in output:
                return "traceback", output[output.index("Traceback") :][-300:]
            if process.returncode != 143:
                return "unclear", f"exit {process.returncode}"
            stop = next(line for line in output.splitlines() if "stopped by signal" in line)
            return "correct", f"exit 143: {stop[:160]}"

        return case

    def launcher_cannot_run(kind: str):
        def case():
            target = work / ("noexec.py" if kind == "not executable" else "adirectory")
            if kind == "not executable":
                target.write_text("print(1)\n")
            else:
                target.mkdir(exist_ok=True)
            return verdict(run("-m", "gpt_scratch.requeue", str(target), "--max_steps", "1"), "cannot be run")

        return case

    def missing_shard_dirs():
        return verdict(run("train.py", *S, "--token_shards", json.dumps({str(work / "noshards"): 1}), "--run_dir",
                           str(work / "ns")), "does not exist")  # fmt: skip

    def only_document_held_out():
        few = work / "few.jsonl"
        few.write_text("".join(lines[:5]))
        data = json.dumps({str(few): 0.5, str(corpus): 0.5})
        return verdict(run("train.py", *S, "--data", data, "--run_dir", str(work / "few")),
                       "none is left to train on; give")  # fmt: skip

    def damaged_checkpoint_init_from():
        damaged = work / "damaged-checkpoint"
        if not damaged.exists():
            shutil.copytree(base_run() / "checkpoints" / "step-000006", damaged)
            weights = damaged / "model.safetensors"
            data = bytearray(weights.read_bytes())
            data[-10] ^= 0xFF
            weights.write_bytes(bytes(data))
        result = run("train.py", *S, "--data", str(corpus), "--init_from", str(damaged), "--run_dir", str(work / "d"))
        return verdict(result, "start from another checkpoint")

    def readme_as_init_from():
        return verdict(run("train.py", *S, "--data", str(corpus), "--init_from", "README.md", "--run_dir",
                           str(work / "r")), "init_from takes")  # fmt: skip

    def offline_hub_id():
        return verdict(run("train.py", *S, "--data", str(corpus), "--init_from", "nobody/no-such-model", "--run_dir",
                           str(work / "h")), "set 'HF_HUB_OFFLINE=0' as environment variable.")  # fmt: skip

    def read_only_export_dir():
        locked = work / "locked"
        locked.mkdir(exist_ok=True)
        # As root every directory is writable: a read-only tmpfs then, as the suite's storage tests mount.
        mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs",
                                                        str(locked)]).returncode == 0  # fmt: skip
        if not mounted:
            locked.chmod(0o500)
        try:
            result = run("train.py", *S, "--data", str(corpus), "--run_dir", str(work / "ro-export"), "--export_dir",
                         str(locked / "model"))  # fmt: skip
            if "step 1/" in result.stdout or "step      1/" in result.stdout:
                return "unclear", "found only after training"
            return verdict(result, "could not export its model at the end")
        finally:
            if mounted:
                subprocess.run(["umount", "-l", str(locked)])
            else:
                locked.chmod(0o700)

    def refused_run_leaves_nothing():
        run_dir = work / "refused"
        result = run("train.py", *S, "--data", str(work / "nowhere.jsonl"), "--run_dir", str(run_dir))
        if (run_dir / "checkpoints").exists():
            return "unclear", "left an empty checkpoints/"
        return verdict(result, "no such file or directory")

    return [
        ("export over a model the user saved", export_over_saved_model),
        ("mixture resumed in another order", reordered_mixture_resume),
        ("mixture weights whose sum overflows", overflowing_weights),
        ("mixture mapping naming a source twice", duplicate_mapping_key),
        ("--init_from ''", empty_init_from),
        ("a source of random bytes in a mixture", random_bytes_source),
        ("init_from: truncated model.safetensors", loads("truncated", truncate, "is damaged", "init_from")),
        ("eval.py perplexity: truncated model.safetensors", loads("truncated", truncate, "is damaged", "perplexity")),
        ("eval.py tasks: truncated model.safetensors", loads("truncated", truncate, "is damaged", "tasks")),
        ("init_from: pytorch_model.bin holding code", loads("hostile", hostile_pickle, "not weights", "init_from")),
        (
            "eval.py perplexity: pytorch_model.bin holding code",
            loads("hostile", hostile_pickle, "not weights", "perplexity"),
        ),  # fmt: skip
        ("init_from: config.json not JSON", loads("bad-config", not_json_config, "is not valid JSON", "init_from")),
        ("requeue: SIGTERM to every process (scancel)", requeue_case("every process")),
        ("requeue: SIGTERM before step 1", requeue_case("setup")),
        ("requeue: launcher not executable", launcher_cannot_run("not executable")),
        ("requeue: launcher is a directory", launcher_cannot_run("directory")),
        ("token_shards mapping of missing directories", missing_shard_dirs),
        ("a source its held-out documents would take whole", only_document_held_out),
        ("init_from: a damaged checkpoint", damaged_checkpoint_init_from),
        ("init_from README.md", readme_as_init_from),
        ("init_from a Hub id, offline and not cached", offline_hub_id),
        ("a read-only export_dir", read_only_export_dir),
        ("a run refused in setup", refused_run_leaves_nothing),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="run only the cases whose name holds one of these")
    parser.add_argument("--keep", default=None, help="work in this directory and keep it (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="edge-cases-"))
    counts: dict[str, int] = {}
    try:
        for name, case in cases(work):
            if args.only and not any(word in name for word in args.only):
                continue
            started = time.perf_counter()
            kind, detail = case()
            counts[kind] = counts.get(kind, 0) + 1
            print(f"{kind:10} {name} ({time.perf_counter() - started:.0f} s): {detail}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(" | ".join(f"{kind} {count}" for kind, count in sorted(counts.items())))
    return 1 if {"traceback", "silent", "data lost"} & set(counts) else 0


if __name__ == "__main__":
    sys.exit(main())
