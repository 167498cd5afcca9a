"""The quickstart (its own tokenizer) against the one with GPT-2's tokenizer, back to back on this machine.

Each run is what a user runs: `python train.py CONFIG` in a fresh process, timed from start to exported model (the
quickstart's tokenizer training is timed too and added to its time). Both models are then scored on the same text,
the first --score-docs documents of python-stdlib (held out by both runs), in bits per byte: loss per token cannot
compare two tokenizers, bits per byte can. Target: the quickstart's bits per byte at most 0.8x the other's, in no
more wall-clock time.

    python bench/quickstart_compare.py                                    # configs/quickstart.yaml vs the GPT-2 one
    python bench/quickstart_compare.py --vocab-sweep 1024,2048,4096,8192  # the quickstart with each tokenizer size
    python bench/quickstart_compare.py --variant wide:n_layer=4,n_embd=384,vocab=8192 --no-reference  # other shapes

Prints a table (wall seconds, steps, train.py's own validation loss and bpb, bpb on the shared text) and each run's
samples.txt.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from gpt_scratch.data import TextSource, validation_documents  # noqa: E402
from gpt_scratch.perplexity import encode_documents, evaluate_perplexity, token_byte_lengths  # noqa: E402

QUICKSTART = ROOT / "configs" / "quickstart.yaml"
REFERENCE = ROOT / "configs" / "quickstart-gpt2-tokenizer.yaml"
QUICKSTART_VOCAB = 2048  # configs/quickstart.yaml's tokenizer_vocab_size
FINAL_EVAL = re.compile(r"eval step (\d+): val loss ([\d.]+) \| val bpb ([\d.]+)")


def run(command: list[str], log: Path) -> float:
    """Run ``command`` in the repository with its output in ``log``; the wall-clock seconds it took."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    with log.open("w") as out:
        result = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed; see {log}")
    return time.perf_counter() - start


def train_tokenizer(vocab_size: int, work: Path) -> tuple[Path, float]:
    out = work / f"tokenizer-{vocab_size}"
    if (out / "tokenizer.json").exists():
        return out, 0.0
    command = [sys.executable, "-m", "gpt_scratch.tokenizer", "train", "--data", "python-stdlib",
               "--vocab_size", str(vocab_size), "--out", str(out)]  # fmt: skip
    return out, run(command, work / f"tokenizer-{vocab_size}.log")


@torch.no_grad()
def shared_text_bpb(run_dir: Path, docs: list[str]) -> float:
    """Bits per byte of the run's model on ``docs``, in windows of its training length advancing by half of it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(run_dir / "model", trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model", trust_remote_code=True)
    last = sorted((run_dir / "checkpoints").glob("step-*"))[-1]
    seq_len = json.loads((last / "trainer_state.json").read_text())["config"]["seq_len"]
    tokens = torch.from_numpy(encode_documents(tokenizer, docs))
    result = evaluate_perplexity(model, tokens, seq_len, seq_len // 2, token_bytes=token_byte_lengths(tokenizer))
    return result["bits_per_byte"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/quickstart-compare", help="run directories and logs go here")
    parser.add_argument("--vocab-sweep", default=None, help="comma-separated tokenizer sizes for the quickstart")
    parser.add_argument("--variant", action="append", default=[], help="NAME:key=value,... over the quickstart")
    parser.add_argument("--no-reference", action="store_true", help="skip the GPT-2-tokenizer quickstart")
    parser.add_argument("--score-docs", type=int, default=40, help="held-out documents both are scored on")
    args = parser.parse_args()
    work = (ROOT / args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)

    # name -> (config, overrides, tokenizer vocab size or None)
    runs: dict[str, tuple[Path, list[str], int | None]] = {}
    if not args.no_reference:
        runs["gpt2-tokenizer"] = (REFERENCE, [], None)
    sizes = [int(v) for v in args.vocab_sweep.split(",")] if args.vocab_sweep else [QUICKSTART_VOCAB]
    for size in sizes if not args.variant else []:
        runs[f"own-{size}"] = (QUICKSTART, [], size)
    for variant in args.variant:  # NAME:key=value,...; vocab=N trains (once) and uses a tokenizer of N tokens
        name, _, settings = variant.partition(":")
        pairs = dict(pair.split("=", 1) for pair in settings.split(",") if pair)
        vocab_size = int(pairs.pop("vocab", QUICKSTART_VOCAB))
        runs[name] = (QUICKSTART, [part for key, value in pairs.items() for part in (f"--{key}", value)], vocab_size)

    docs = validation_documents(TextSource("python-stdlib"), args.score_docs)
    rows = []
    for name, (config, overrides, vocab_size) in runs.items():
        extra, tokenizer_seconds = [], 0.0
        if vocab_size is not None:
            tokenizer_dir, tokenizer_seconds = train_tokenizer(vocab_size, work)
            extra = ["--tokenizer", str(tokenizer_dir)]
        run_dir = work / name
        command = [sys.executable, "train.py", str(config), "--run_dir", str(run_dir), *extra, *overrides]
        print(f"{name}: {' '.join(command[1:])}", flush=True)
        seconds = run(command, work / f"{name}.log") + tokenizer_seconds
        step, val_loss, val_bpb = FINAL_EVAL.findall((work / f"{name}.log").read_text())[-1]
        bpb = shared_text_bpb(run_dir, docs)
        rows.append((name, seconds, int(step), float(val_loss), float(val_bpb), bpb))
        print(f"  {seconds:.0f} s (tokenizer {tokenizer_seconds:.0f} s), {step} steps, val loss {val_loss}, "
              f"val bpb {val_bpb}, shared-text bpb {bpb:.4f}", flush=True)  # fmt: skip

    print(f"\nscored on the first {args.score_docs} python-stdlib documents (held out by every run)")
    print("| run | wall s | steps | val loss (nats/token) | val bpb (train.py) | bpb, shared text | ratio |")
    print("|---|---|---|---|---|---|---|")
    base = rows[0][5]
    for name, seconds, step, val_loss, val_bpb, bpb in rows:
        print(f"| {name} | {seconds:.0f} | {step} | {val_loss:.3f} | {val_bpb:.3f} | {bpb:.3f} | {bpb / base:.2f}x |")
    for name, *_ in rows:
        print(f"\n--- {name}: samples.txt ---\n{(work / name / 'samples.txt').read_text()}")


if __name__ == "__main__":
    main()
