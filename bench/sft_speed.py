"""Chat fine-tuning tokens/s: train.py's step against TRL's SFTTrainer, same model, data, packing and precision.

Both train GPTScratchForCausalLM from the same weights on python-docs-chat, rendered through the same chat template,
the loss on the answers, conversations packed padding-free (TRL: ``packing=True, padding_free=True,
assistant_only_loss=True``; train.py: ``ConversationBatches``, whose windows of T + 1 tokens end with padding the
loss ignores), AdamW, fp32 on a CPU. Ours is timed with its data pipeline inline (it renders and packs conversations
as it trains); TRL's is timed from its first optimizer step to its last, its dataset tokenized and packed before.
Tokens/s counts real tokens (not padding) on both sides; the first step of each is warm-up, not timed. Target on
CPU at the 124M shape: >= 1.3x.

    python bench/sft_speed.py                          # GPT-2 124M's shape, T = 512, 4 windows a step (CPU)
    python bench/sft_speed.py --preset mini --steps 20  # seconds
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from datasets import Dataset
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM  # noqa: E402
from gpt_scratch.chat_template import fit_model_to_tokenizer, with_chat_template  # noqa: E402
from gpt_scratch.data import TextSource  # noqa: E402
from gpt_scratch.data.python_docs_chat import conversations  # noqa: E402
from gpt_scratch.data.sft import ConversationBatches  # noqa: E402
from gpt_scratch.tokenizer import gpt2_tokenizer  # noqa: E402
from gpt_scratch.train_config import TrainConfig  # noqa: E402
from gpt_scratch.training import build_optimizers, prepare_with_schedules, train_step, use_training_loss  # noqa: E402


class StepTimes(TrainerCallback):
    """Each optimizer step's end time, and the real tokens it trained on."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.tokens: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())
        self.tokens.append(state.num_input_tokens_seen)


def model_for(preset: str, tokenizer) -> GPTScratchForCausalLM:
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(GPTScratchConfig.from_preset(preset, vocab_size=50257, resid_pdrop=0.0,
                                                               embd_pdrop=0.0, attn_pdrop=0.0))  # fmt: skip
    fit_model_to_tokenizer(model, tokenizer, lambda line: None)
    return model


def ours(args, tokenizer, data_file: Path) -> float:
    config = TrainConfig(model=args.preset, seq_len=args.seq_len, micro_batch_size=args.micro_batch, lr=1e-4,
                         min_lr=1e-4, warmup_steps=0, tokens_per_step=args.seq_len * args.micro_batch)  # fmt: skip
    accelerator = Accelerator(cpu=True)
    model = model_for(args.preset, tokenizer)
    optimizers = build_optimizers(model, config, accelerator.device)
    prepared, optimizers, schedulers = prepare_with_schedules(accelerator, model, optimizers, lambda step: 1.0)
    use_training_loss(accelerator.unwrap_model(prepared), config, accelerator.device, compiled=False)
    data = ConversationBatches(TextSource(str(data_file)), tokenizer, args.micro_batch, args.seq_len)
    real_tokens = []
    reading = data.next_batch

    def next_batch():
        batch = reading()
        real_tokens.append(int((batch[0] != tokenizer.eos_token_id).sum()) + int((batch[2] == 0).sum()))
        return batch

    data.next_batch = next_batch
    prepared.train()
    train_step(prepared, prepared, data, optimizers, schedulers, accelerator, 1, 1.0)  # warm-up
    start, counted = time.perf_counter(), len(real_tokens)
    for _ in range(args.steps):
        train_step(prepared, prepared, data, optimizers, schedulers, accelerator, 1, 1.0)
    return sum(real_tokens[counted:]) / (time.perf_counter() - start)


def trl(args, tokenizer, rows: list[dict]) -> float:
    from trl import SFTConfig, SFTTrainer

    times = StepTimes()
    with tempfile.TemporaryDirectory() as output:
        config = SFTConfig(output_dir=output, use_cpu=True, bf16=False, packing=True, padding_free=True,
                           assistant_only_loss=True, max_length=args.seq_len,
                           per_device_train_batch_size=args.micro_batch,
                           max_steps=args.steps + 1, learning_rate=1e-4, lr_scheduler_type="constant",
                           report_to=[], save_strategy="no", logging_steps=1000, max_grad_norm=1.0,
                           include_num_input_tokens_seen="non_padding", dataloader_num_workers=0)  # fmt: skip
        trainer = SFTTrainer(model=model_for(args.preset, tokenizer), args=config, processing_class=tokenizer,
                             train_dataset=Dataset.from_list(rows), callbacks=[times])  # fmt: skip
        trainer.train()
    return (times.tokens[-1] - times.tokens[0]) / (times.ends[-1] - times.ends[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="gpt2", help="the model's shape (gpt2: 124M)")
    parser.add_argument("--seq-len", type=int, default=512, help="tokens per packed window")
    parser.add_argument("--micro-batch", type=int, default=4, help="windows (TRL: packed sequences) per step")
    parser.add_argument("--steps", type=int, default=6, help="timed steps of each")
    parser.add_argument("--rounds", type=int, default=2, help="ours and TRL's, alternating")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    tokenizer = with_chat_template(gpt2_tokenizer(args.seq_len))
    rows = conversations()
    with tempfile.TemporaryDirectory() as directory:
        data_file = Path(directory) / "chat.jsonl"
        data_file.write_text("".join(__import__("json").dumps(row) + "\n" for row in rows))
        results = {"train.py": [], "TRL SFTTrainer": []}
        for _ in range(args.rounds):
            results["train.py"].append(ours(args, tokenizer, data_file))
            results["TRL SFTTrainer"].append(trl(args, tokenizer, rows))
    best = {name: max(values) for name, values in results.items()}
    for name, values in results.items():
        print(f"{name:>16}: {best[name]:,.0f} tokens/s (rounds: {', '.join(f'{v:,.0f}' for v in values)})")
    print(f"ratio train.py / TRL: {best['train.py'] / best['TRL SFTTrainer']:.2f}x "
          f"({args.preset}, T={args.seq_len}, {args.micro_batch} windows a step, fp32, {torch.get_num_threads()} "
          "threads)")  # fmt: skip


if __name__ == "__main__":
    main()
