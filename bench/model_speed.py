"""Training-step and generation speed of GPTScratchForCausalLM against transformers' GPT2LMHeadModel.

Both models hold the same weights and see the same inputs, measured alternately in one run, so the ratios are
meaningful on a noisy shared machine even when the absolute times are not. Ours runs as the recipes configure it:
the vocabulary padded to 50304 rows (``padded_vocab_size``; the padded ids are never scored or generated) and the
chunked head + loss train.py trains with (``gpt_scratch.training.head_loss``). ``--plain`` measures neither.

    python bench/model_speed.py                      # 4 layers, 256 wide, T=128, batch 8 (CPU default)
    python bench/model_speed.py --n-layer 12 --n-embd 768 --n-head 12 --device cuda --dtype bfloat16
"""

import argparse
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
from gpt_scratch.modeling_gpt_scratch import state_dict_from_gpt2
from gpt_scratch.training.head_loss import chunked_head_cross_entropy


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=256)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=20, help="timed training steps per model and round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating measurement rounds")
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--gen-batch-size", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--padded-vocab", type=int, default=50304, help="our padded_vocab_size (0: no padding)")
    parser.add_argument("--plain", action="store_true", help="no vocabulary padding and no CPU loss for ours")
    return parser.parse_args()


def build_models(args: argparse.Namespace) -> tuple[GPT2LMHeadModel, GPTScratchForCausalLM]:
    torch.manual_seed(0)
    gpt2_config = GPT2Config(
        n_layer=args.n_layer,
        n_embd=args.n_embd,
        n_head=args.n_head,
        n_positions=max(1024, args.seq_len),
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    gpt2_config._attn_implementation = "sdpa"  # transformers' fastest built-in attention, as ours uses
    reference = GPT2LMHeadModel(gpt2_config)
    padded = None if args.plain or not args.padded_vocab else args.padded_vocab
    ours = GPTScratchForCausalLM(GPTScratchConfig.from_gpt2_config(gpt2_config, padded_vocab_size=padded))
    weights = state_dict_from_gpt2(reference.state_dict())
    with torch.no_grad():
        for name in ("transformer.wte.weight", "lm_head.weight"):  # the real rows; padded rows keep their init
            weights[name] = torch.cat([weights[name], ours.state_dict()[name][gpt2_config.vocab_size :]])
    ours.load_state_dict(weights)
    if not args.plain:
        ours.head_loss_function = chunked_head_cross_entropy
    return reference.to(args.device), ours.to(args.device)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_training(model: torch.nn.Module, batch: torch.Tensor, steps: int, args: argparse.Namespace) -> float:
    """Seconds per training step: forward with labels, backward, AdamW step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")
    model.train()
    for step in range(steps + 2):  # two untimed warm-up steps
        if step == 2:
            synchronize(args.device)
            start = time.perf_counter()
        with autocast:
            loss = model(batch, labels=batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    synchronize(args.device)
    return (time.perf_counter() - start) / steps


@torch.no_grad()
def time_generation(model: torch.nn.Module, prompt: torch.Tensor, args: argparse.Namespace) -> float:
    """Generated tokens per second, greedy with the KV cache."""
    model.eval()
    kwargs = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False}
    kwargs |= {"pad_token_id": 50256, "use_cache": True}
    model.generate(prompt, **{**kwargs, "max_new_tokens": 4, "min_new_tokens": 4})  # warm-up
    synchronize(args.device)
    start = time.perf_counter()
    out = model.generate(prompt, **kwargs)
    synchronize(args.device)
    return (out.shape[1] - prompt.shape[1]) * prompt.shape[0] / (time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    reference, ours = build_models(args)
    generator = torch.Generator().manual_seed(1)
    batch = torch.randint(0, 50257, (args.batch_size, args.seq_len), generator=generator).to(args.device)
    prompt = torch.randint(0, 50257, (args.gen_batch_size, args.prompt_len), generator=generator).to(args.device)

    train = {"hf": [], "ours": []}
    gen = {"hf": [], "ours": []}
    for _ in range(args.rounds):
        for name, model in (("hf", reference), ("ours", ours)):
            train[name].append(time_training(model, batch, args.train_steps, args))
            gen[name].append(time_generation(model, prompt, args))

    hf_step, our_step = statistics.median(train["hf"]), statistics.median(train["ours"])
    hf_tps, our_tps = statistics.median(gen["hf"]), statistics.median(gen["ours"])
    print(
        f"config: n_layer={args.n_layer} n_embd={args.n_embd} n_head={args.n_head} T={args.seq_len} "
        f"batch={args.batch_size} device={args.device} dtype={args.dtype} threads={torch.get_num_threads()} "
        f"ours: padded_vocab_size={ours.config.padded_vocab_size} loss={getattr(ours.loss_function, '__name__', '?')}"
    )
    print(
        f"train step  HF GPT-2 {hf_step * 1e3:8.1f} ms | ours {our_step * 1e3:8.1f} ms | "
        f"HF/ours {hf_step / our_step:.3f}x (forward + backward + AdamW)"
    )
    print(
        f"generation  HF GPT-2 {hf_tps:8.1f} tok/s | ours {our_tps:8.1f} tok/s | ours/HF {our_tps / hf_tps:.3f}x "
        f"(greedy, cache, prompt {args.prompt_len}, {args.new_tokens} new, batch {args.gen_batch_size})"
    )


if __name__ == "__main__":
    main()
