"""Fine-tuning tokens/s: train.py with ``init_from`` against transformers' ``Trainer`` as ``run_clm.py`` sets it up.

Both start from the same GPT-2-format directory (``GPT2LMHeadModel.save_pretrained``, GPT-2 124M's shape, seeded
random weights: no download), train on the same text (python-stdlib's first files) with the same batch, sequence
length, learning rate (5e-5, decaying linearly to 0, no warmup: run_clm's defaults), AdamW (Trainer's betas, no
weight decay) and number of steps:

- ours: ``python train.py configs/finetune-gpt2.yaml --init_from DIR ...``, in this process; tokens/s from its log
  line of each step;
- transformers: the texts tokenized with GPT-2's tokenizer, concatenated and cut into ``block_size`` chunks
  (``group_texts``, labels = a copy of the input ids), ``Trainer`` with ``default_data_collator`` and
  ``TrainingArguments`` at their defaults otherwise; tokens/s from the time of each step (a callback).

The first steps of each are left out (allocation, first-call costs); the ratio is of the medians, measured in the same
run. Then both final models are scored on the same held-out text (the same windows, the same code): the validation
losses must agree within noise. Target on CPU: >= 1.2x.

    python bench/finetune_speed.py                     # 124M shape, T=256, micro-batch 4, 16 steps each (CPU)
    python bench/finetune_speed.py --steps 20 --seq-len 1024 --micro-batch 8   # on a GPU
"""

import argparse
import io
import os
import re
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from common import step_options  # noqa: E402  (bench/common.py, beside this script)

from gpt_scratch import GPTScratchForCausalLM, gpt2_tokenizer  # noqa: E402
from gpt_scratch.data import TextSource, token_windows, validation_tokens  # noqa: E402
from gpt_scratch.data.sources import _stdlib_files  # noqa: E402
from gpt_scratch.tokenizer import load_tokenizer  # noqa: E402

LEARNING_RATE = 5e-5  # run_clm's default (TrainingArguments.learning_rate)
SKIPPED_STEPS = 2  # warm-up steps left out of the medians


def write_corpus(directory: Path, files: int) -> Path:
    """The first ``files`` standard-library sources as .txt documents: the same text for both."""
    directory.mkdir(parents=True)
    for index, source in enumerate(_stdlib_files()[:files]):
        (directory / f"{index:04d}.txt").write_text(Path(source).read_text(encoding="utf-8", errors="replace"))
    return directory


def ours(model_dir: Path, corpus: Path, run_dir: Path, args) -> tuple[float, Path]:
    """train.py's fine-tune: the median tokens/s of its steps, and its exported model."""
    import train

    argv = ["configs/finetune-gpt2.yaml", "--init_from", str(model_dir), "--data", f"{corpus}/*.txt", "--run_dir",
            str(run_dir), "--seq_len", str(args.seq_len), "--micro_batch_size", str(args.micro_batch),
            "--tokens_per_step", str(args.seq_len * args.micro_batch), "--max_steps", str(args.steps), "--lr",
            str(LEARNING_RATE), "--log_interval", "1", "--eval_interval", "100000", "--checkpoint_interval",
            "100000", "--val_docs", str(args.val_docs), "--val_batches", "1", "--sample_tokens", "1",
            "--mixed_precision", "bf16" if args.bf16 else "no", "--compile", str(args.compile).lower(),
            "--beta2", "0.999", "--weight_decay", "0.0",  # Trainer's AdamW, so the losses compare
            "--lr_schedule", "wsd", "--decay_fraction", "1.0"]  # run_clm's linear decay  # fmt: skip
    log = io.StringIO()
    os.chdir(ROOT)
    with redirect_stdout(log):
        train.main(argv)
    per_step = [float(m.group(1).replace(",", "")) for m in re.finditer(r"\| ([\d,]+) tok/s", log.getvalue())]
    return statistics.median(per_step[SKIPPED_STEPS:]), run_dir / "model"


def transformers_run_clm(model_dir: Path, corpus: Path, out_dir: Path, args) -> tuple[float, Path]:
    """What run_clm.py does: tokenize, group_texts into block_size chunks, Trainer with default_data_collator."""
    from datasets import Dataset
    from transformers import (
        GPT2LMHeadModel,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        default_data_collator,
    )

    tokenizer = gpt2_tokenizer()
    # The same documents train.py trains on: the corpus minus its first val_docs (held out for validation).
    texts = [path.read_text() for path in sorted(corpus.glob("*.txt"))][args.val_docs :]
    tokenized = Dataset.from_dict({"text": texts}).map(lambda b: tokenizer(b["text"]), batched=True,
                                                       remove_columns=["text"])  # fmt: skip
    block_size = args.seq_len

    def group_texts(examples: dict) -> dict:  # run_clm.py's
        concatenated = {k: sum(examples[k], []) for k in examples}
        total = (len(concatenated["input_ids"]) // block_size) * block_size
        result = {k: [t[i : i + block_size] for i in range(0, total, block_size)] for k, t in concatenated.items()}
        result["labels"] = result["input_ids"].copy()
        return result

    chunks = tokenized.map(group_texts, batched=True, batch_size=1000)
    step_times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *_, **__):
            self.started = time.perf_counter()

        def on_step_end(self, *_, **__):
            step_times.append(time.perf_counter() - self.started)

    training_args = TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=args.micro_batch, learning_rate=LEARNING_RATE,
        max_steps=args.steps, lr_scheduler_type="linear", save_strategy="no", report_to=[], logging_steps=1000,
        bf16=args.bf16, torch_compile=args.compile, use_cpu=not torch.cuda.is_available(), seed=1337,
    )  # fmt: skip
    model = GPT2LMHeadModel.from_pretrained(model_dir)
    trainer = Trainer(model=model, args=training_args, train_dataset=chunks, data_collator=default_data_collator,
                      callbacks=[StepTimer()])  # fmt: skip
    trainer.train()
    trainer.save_model(str(out_dir / "model"))
    tokens = args.micro_batch * block_size
    return statistics.median(tokens / t for t in step_times[SKIPPED_STEPS:]), out_dir / "model"


@torch.no_grad()
def held_out_loss(model, windows: list[torch.Tensor]) -> float:
    model.eval()
    losses = [model(input_ids=w[:, :-1], labels=w[:, :-1], shift_labels=w[:, 1:]).loss for w in windows]
    return float(torch.stack(losses).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    step_options(parser, seq_len=256, micro_batch=4)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--files", type=int, default=60, help="standard-library files in the corpus")
    parser.add_argument("--val-docs", type=int, default=10)
    args = parser.parse_args()
    from transformers import GPT2Config, GPT2LMHeadModel

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config()).save_pretrained(work / "gpt2-format")  # 124M's shape
        corpus = write_corpus(work / "corpus", args.files)
        hf_tps, hf_dir = transformers_run_clm(work / "gpt2-format", corpus, work / "hf", args)
        our_tps, our_dir = ours(work / "gpt2-format", corpus, work / "ours", args)
        held_out = validation_tokens(TextSource(f"{corpus}/*.txt"), args.val_docs, load_tokenizer("gpt2"))
        windows = token_windows(held_out, args.seq_len, args.micro_batch)[:4]
        our_loss = held_out_loss(GPTScratchForCausalLM.from_pretrained(our_dir, dtype=torch.float32), windows)
        hf_loss = held_out_loss(GPT2LMHeadModel.from_pretrained(hf_dir, dtype=torch.float32), windows)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    options = (", bf16" if args.bf16 else "") + (", compiled" if args.compile else "")
    print(f"fine-tune, GPT-2 124M shape, T={args.seq_len}, micro-batch {args.micro_batch}, {args.steps} steps, "
          f"lr {LEARNING_RATE:g} linear, {device}{options}")  # fmt: skip
    print(f"  transformers Trainer (run_clm.py): {hf_tps:,.0f} tokens/s | held-out loss {hf_loss:.4f}")
    print(f"  train.py --init_from:              {our_tps:,.0f} tokens/s | held-out loss {our_loss:.4f}")
    print(f"  ratio: {our_tps / hf_tps:.2f}x (target >= 1.2x)")


if __name__ == "__main__":
    main()
