"""Greedy generation tokens/s: ours with transformers' default generate, and compiled with a static cache, against
GPT2LMHeadModel's default generate, on the same weights and prompts, at batch 1 and 32 (measured in one run).

Compiled decoding is transformers' recipe: ``cache_implementation="static"`` keeps every tensor's shape fixed, and
``generate`` then compiles the decode step itself (``CompileConfig``: fullgraph, "reduce-overhead", so a CUDA graph
on a GPU) instead of launching each kernel from Python every token. The prompt's prefill runs uncompiled: compiling
the whole forward ourselves under CUDA graphs breaks, because the static cache's tensors are overwritten between
replays.

    python bench/generation_speed.py                                        # 4 layers, 256 wide (CPU)
    python bench/generation_speed.py --preset gpt2 --dtype bfloat16         # GPT-2 124M on a GPU
"""

import argparse
import time

import torch
from transformers import GPT2LMHeadModel
from transformers.generation import CompileConfig

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
from gpt_scratch.modeling_gpt_scratch import state_dict_to_gpt2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=None, help="a GPTScratchConfig preset instead of the 4x256 model")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled static-cache runs")
    return parser.parse_args()


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def tokens_per_second(model, prompt: torch.Tensor, args: argparse.Namespace, **kwargs) -> tuple[float, torch.Tensor]:
    settings = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False}
    settings |= {"pad_token_id": 50256, "attention_mask": torch.ones_like(prompt), **kwargs}
    for _ in range(2):  # warm-up: compilation, CUDA graph capture, allocator
        model.generate(prompt, **settings)
    synchronize(args.device)
    start = time.perf_counter()
    out = model.generate(prompt, **settings)
    synchronize(args.device)
    return args.new_tokens * prompt.shape[0] / (time.perf_counter() - start), out


def main() -> None:
    args = parse_args()
    shape = {"n_layer": 4, "n_head": 4, "n_embd": 256} if args.preset is None else {}
    config = GPTScratchConfig.from_preset(args.preset or "gpt2", **shape, padded_vocab_size=50304)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    ours = GPTScratchForCausalLM(config).to(args.device, dtype).eval()
    reference = GPT2LMHeadModel(config.to_gpt2_config())
    reference.load_state_dict(state_dict_to_gpt2(ours.state_dict(), config.vocab_size), strict=False)
    reference.tie_weights()
    reference = reference.to(args.device, dtype).eval()
    compile_config = CompileConfig(fullgraph=True, mode="reduce-overhead" if args.device.startswith("cuda") else None)
    compile_config._compile_all_devices = True  # generate compiles on a GPU only unless told otherwise

    print(
        f"config: n_layer={config.n_layer} n_embd={config.n_embd} prompt={args.prompt_len} new={args.new_tokens} "
        f"device={args.device} dtype={args.dtype} threads={torch.get_num_threads()}"
    )
    generator = torch.Generator().manual_seed(1)
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        prompt = torch.randint(0, config.vocab_size, (batch, args.prompt_len), generator=generator).to(args.device)
        hf, hf_out = tokens_per_second(reference, prompt, args)
        eager, eager_out = tokens_per_second(ours, prompt, args)
        line = f"batch {batch:3d} | HF GPT-2 {hf:9.1f} tok/s | ours {eager:9.1f} ({eager / hf:.2f}x)"
        if not args.no_compile:
            static = {"cache_implementation": "static", "compile_config": compile_config}
            fast, fast_out = tokens_per_second(ours, prompt, args, **static)
            line += f" | ours compiled + static cache {fast:9.1f} ({fast / hf:.2f}x)"
            # bf16 rounding can flip near-ties; fp32 greedy tokens must agree exactly.
            same = torch.equal(fast_out, hf_out) if args.dtype == "float32" else None
            line += f" | same tokens as HF: {same if same is not None else 'n/a in bf16'}"
        print(line + f" | eager same tokens as HF: {torch.equal(eager_out, hf_out)}")


if __name__ == "__main__":
    main()
