"""The same GPT, written to be read: one attention head at a time, every mask and scale spelled out.

This is the model of `modeling_gpt_scratch.py` without the engineering (fused q/k/v, SDPA, KV cache, transformers
integration). It loads the very same weights (`load_from_fast`) and computes the same logits, so you can read this
file to understand the fast one. Train it on any text file on a laptop CPU in minutes:

    python -m gpt_scratch.educational --text notes.txt --tokenizer char --steps 2000
    python -m gpt_scratch.educational --text notes.txt --tokenizer gpt2 --steps 500 --n-embd 128

Shapes: B = batch, T = sequence length, C = n_embd (width), nh = heads, hs = C // nh (head size), V = vocabulary.
"""

import argparse
import math
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The command line this program takes (``--help`` prints it)."""
    from . import cli  # the command line only: the model above reads without the rest of the package

    parser = cli.Parser(prog="python -m gpt_scratch.educational", description=__doc__.splitlines()[0])
    parser.add_argument("--text", required=True, help="any text file")
    parser.add_argument("--tokenizer", choices=["char", "gpt2"], default="char", help="characters, or GPT-2's BPE")
    parser.add_argument("--steps", type=int, default=1000, help="training steps")
    parser.add_argument("--batch_size", type=int, default=16, help="windows per step")
    parser.add_argument("--n_positions", type=int, default=64, help="the context: tokens per window")
    parser.add_argument("--n_embd", type=int, default=64, help="the width")
    parser.add_argument("--n_head", type=int, default=4, help="attention heads")
    parser.add_argument("--n_layer", type=int, default=2, help="blocks")
    parser.add_argument("--lr", type=float, default=3e-3, help="AdamW's learning rate")
    parser.add_argument("--sample_tokens", type=int, default=300, help="tokens sampled after training")
    return parser


if __name__ == "__main__":  # --help and a mistyped option answer now, not after torch has loaded (a second or more)
    build_parser().parse_args()

import torch
import torch.nn as nn
import torch.nn.functional as F


class Head(nn.Module):
    """One head of causal self-attention: each position mixes the values of the positions up to itself."""

    def __init__(self, n_embd: int, head_size: int, n_positions: int) -> None:
        super().__init__()
        # Three views of every token: what it looks for (query), what it offers (key), what it passes on (value).
        self.query = nn.Linear(n_embd, head_size)
        self.key = nn.Linear(n_embd, head_size)
        self.value = nn.Linear(n_embd, head_size)
        # The causal mask: position t may look at positions 0..t only. A language model predicts the next token,
        # so letting it see the future would be cheating. Lower-triangular ones = allowed.
        self.register_buffer(
            "mask", torch.tril(torch.ones(n_positions, n_positions, dtype=torch.bool)), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.query(x), self.key(x), self.value(x)  # each (B, T, hs)
        # How much each position (row) attends to each other position (column): dot products of query and key.
        # Dividing by sqrt(hs) keeps the scores' variance near 1 whatever the head size; without it, large heads
        # give huge scores and softmax saturates to one-hot, which stops gradients.
        scores = q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1])  # (B, T, T)
        scores = scores.masked_fill(~self.mask[:T, :T], float("-inf"))  # future positions get weight exp(-inf) = 0
        weights = F.softmax(scores, dim=-1)  # each row sums to 1: a weighted average over the past
        return weights @ v  # (B, T, hs)


class MultiHeadAttention(nn.Module):
    """Several heads in parallel, each free to attend to something different; their outputs side by side."""

    def __init__(self, n_embd: int, n_head: int, n_positions: int) -> None:
        super().__init__()
        head_size = n_embd // n_head
        self.heads = nn.ModuleList(Head(n_embd, head_size, n_positions) for _ in range(n_head))
        self.proj = nn.Linear(n_embd, n_embd)  # mixes what the heads found back into the residual stream

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([head(x) for head in self.heads], dim=-1))  # (B, T, nh * hs) = (B, T, C)


class MLP(nn.Module):
    """Per-position computation: widen 4x, apply a nonlinearity, project back. Attention moves information
    between positions; the MLP processes it at each position."""

    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_embd, 4 * n_embd)
        self.proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))  # GPT-2's GELU (tanh approximation)


class Block(nn.Module):
    """Attention then MLP, each added to a residual stream, each reading a LayerNorm'd copy of it (pre-LN).

    Residuals: each block adds a correction to x instead of replacing it, so gradients flow straight from the loss
    to the first layer and a deep stack trains like a shallow one. Pre-LN (GPT-2's choice): normalising the input of
    each branch, not the stream itself, keeps that straight path clean.
    """

    def __init__(self, n_embd: int, n_head: int, n_positions: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.attn = MultiHeadAttention(n_embd, n_head, n_positions)
        self.ln2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token embeddings + position embeddings -> n_layer blocks -> LayerNorm -> logits over the vocabulary."""

    def __init__(self, vocab_size: int, n_positions: int = 128, n_embd: int = 64, n_head: int = 4, n_layer: int = 2):
        super().__init__()
        self.n_positions = n_positions
        self.token_embedding = nn.Embedding(vocab_size, n_embd)  # what each token means
        self.position_embedding = nn.Embedding(n_positions, n_embd)  # where it is (attention alone is order-blind)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, n_positions) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = (
            self.token_embedding.weight
        )  # tied, as in GPT-2: reading and writing tokens share one table
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        B, T = idx.shape
        if self.n_positions < T:
            raise ValueError(f"sequence of {T} tokens is longer than n_positions ({self.n_positions})")
        x = self.token_embedding(idx) + self.position_embedding(torch.arange(T, device=idx.device))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V): a score for every possible next token
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0) -> torch.Tensor:
        """Append tokens one at a time, each sampled from the model's prediction for the next position."""
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.n_positions :])  # only as much context as the model has positions for
            probs = F.softmax(logits[:, -1, :] / temperature, dim=-1)  # (B, V): the last position predicts next
            idx = torch.cat([idx, torch.multinomial(probs, num_samples=1)], dim=1)
        return idx


def load_from_fast(fast_model) -> GPT:
    """A GPT holding the weights of a GPTScratchForCausalLM (the fast model), mapped by hand.

    The fast model computes all heads' queries, keys and values with one fused matrix `c_attn` of shape (3C, C):
    rows [0, C) are the queries of all heads, [C, 2C) the keys, [2C, 3C) the values, and within each, head h owns
    rows [h*hs, (h+1)*hs). So head h's query weight is c_attn.weight[h*hs : (h+1)*hs], its key weight
    c_attn.weight[C + h*hs : C + (h+1)*hs], and so on; biases split the same way.
    """
    config = fast_model.config
    if config.activation_function not in ("gelu_new", "gelu_pytorch_tanh") or config.gpt2_incompatibilities():
        raise ValueError(
            "the educational GPT implements GPT-2 (tanh-GELU, biases, LayerNorm, learned positions, tied head); "
            f"this model differs: {', '.join(config.gpt2_incompatibilities()) or config.activation_function}"
        )
    C, nh = config.n_embd, config.n_head
    hs = C // nh
    model = GPT(config.vocab_size, config.n_positions, C, nh, config.n_layer)
    fast = fast_model.state_dict()
    mine = {"token_embedding.weight": fast["transformer.wte.weight"],
            "position_embedding.weight": fast["transformer.wpe.weight"],
            "ln_f.weight": fast["transformer.ln_f.weight"], "ln_f.bias": fast["transformer.ln_f.bias"],
            "lm_head.weight": fast["lm_head.weight"]}  # fmt: skip
    for layer in range(config.n_layer):
        src, dst = f"transformer.h.{layer}.", f"blocks.{layer}."
        for ours, theirs in (("ln1", "ln_1"), ("ln2", "ln_2")):
            mine[dst + ours + ".weight"] = fast[src + theirs + ".weight"]
            mine[dst + ours + ".bias"] = fast[src + theirs + ".bias"]
        w, b = fast[src + "attn.c_attn.weight"], fast[src + "attn.c_attn.bias"]  # (3C, C), (3C,)
        for h in range(nh):
            for part, offset in (("query", 0), ("key", C), ("value", 2 * C)):
                rows = slice(offset + h * hs, offset + (h + 1) * hs)
                mine[f"{dst}attn.heads.{h}.{part}.weight"] = w[rows]
                mine[f"{dst}attn.heads.{h}.{part}.bias"] = b[rows]
        for ours, theirs in (("attn.proj", "attn.c_proj"), ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")):
            mine[f"{dst}{ours}.weight"] = fast[f"{src}{theirs}.weight"]
            mine[f"{dst}{ours}.bias"] = fast[f"{src}{theirs}.bias"]
    model.load_state_dict(mine, strict=True)
    return model.eval()


def to_fast(model: GPT):
    """The inverse of load_from_fast: a GPTScratchForCausalLM (with generate(), save_pretrained, ...) holding this
    model's weights. Each head's query/key/value rows are stacked back into the fused c_attn."""
    from .configuration_gpt_scratch import GPTScratchConfig
    from .modeling_gpt_scratch import GPTScratchForCausalLM

    n_layer, n_head = len(model.blocks), len(model.blocks[0].attn.heads)
    vocab_size, n_embd = model.token_embedding.weight.shape
    config = GPTScratchConfig(vocab_size=vocab_size, n_positions=model.n_positions, n_embd=n_embd, n_head=n_head,
                              n_layer=n_layer, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                              bos_token_id=0, eos_token_id=0, pad_token_id=0)  # fmt: skip
    fast = GPTScratchForCausalLM(config)
    mine = model.state_dict()
    state = {"transformer.wte.weight": mine["token_embedding.weight"],
             "transformer.wpe.weight": mine["position_embedding.weight"],
             "transformer.ln_f.weight": mine["ln_f.weight"], "transformer.ln_f.bias": mine["ln_f.bias"],
             "lm_head.weight": mine["lm_head.weight"]}  # fmt: skip
    for layer in range(n_layer):
        src, dst = f"blocks.{layer}.", f"transformer.h.{layer}."
        for ours, theirs in (("ln1", "ln_1"), ("ln2", "ln_2")):
            state[dst + theirs + ".weight"], state[dst + theirs + ".bias"] = (
                mine[src + ours + ".weight"],
                mine[src + ours + ".bias"],
            )
        for suffix in ("weight", "bias"):
            parts = [
                mine[f"{src}attn.heads.{h}.{part}.{suffix}"]
                for part in ("query", "key", "value")
                for h in range(n_head)
            ]
            state[f"{dst}attn.c_attn.{suffix}"] = torch.cat(parts)
        for ours, theirs in (("attn.proj", "attn.c_proj"), ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")):
            state[f"{dst}{theirs}.weight"], state[f"{dst}{theirs}.bias"] = (
                mine[f"{src}{ours}.weight"],
                mine[f"{src}{ours}.bias"],
            )
    fast.load_state_dict(state, strict=True)
    return fast.eval()


class CharTokenizer:
    """Characters as tokens: the simplest tokenizer, and enough to learn spelling and style."""

    def __init__(self, text: str) -> None:
        self.chars = sorted(set(text))
        self.index = {ch: i for i, ch in enumerate(self.chars)}
        self.vocab_size = len(self.chars)

    def encode(self, text: str) -> list[int]:
        return [self.index[ch] for ch in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)


class BPETokenizer:
    """GPT-2's byte-level BPE (tiktoken): 50257 tokens, words and common pieces as single tokens."""

    def __init__(self) -> None:
        from .tokenizer import gpt2_encoding

        self.encoding = gpt2_encoding()
        self.vocab_size = self.encoding.n_vocab

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def decode(self, ids: list[int]) -> str:
        return self.encoding.decode(ids)


def train(model: GPT, data: torch.Tensor, steps: int, batch_size: int = 16, lr: float = 3e-3,
          log_every: int = 100, seed: int = 0) -> list[float]:  # fmt: skip
    """The whole training loop: sample windows, predict each next token, step downhill. Returns the losses."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    T = model.n_positions
    losses = []
    model.train()
    for step in range(steps):
        starts = torch.randint(len(data) - T - 1, (batch_size,), generator=generator)
        x = torch.stack([data[s : s + T] for s in starts])  # (B, T) inputs
        y = torch.stack([data[s + 1 : s + T + 1] for s in starts])  # (B, T) the same, one token later
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:5d} | loss {loss.item():.4f}")
    model.eval()
    return losses


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if not Path(args.text).is_file():
        raise FileNotFoundError(f"no such file: {args.text} (--text takes any text file, e.g. README.md)")
    text = Path(args.text).read_text(encoding="utf-8", errors="replace")
    tokenizer = CharTokenizer(text) if args.tokenizer == "char" else BPETokenizer()
    data = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    if len(data) <= args.n_positions + 1:
        raise SystemExit(
            f"{args.text} has {len(data)} tokens; it needs more than n_positions + 1 ({args.n_positions + 1})"
        )
    torch.manual_seed(0)
    model = GPT(tokenizer.vocab_size, args.n_positions, args.n_embd, args.n_head, args.n_layer)
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters, {len(data):,} tokens of {args.text}")
    start = time.time()
    train(model, data, args.steps, args.batch_size, args.lr, log_every=max(1, args.steps // 20))
    print(f"trained in {time.time() - start:.0f} s; a sample:\n")
    print(tokenizer.decode(model.generate(data[None, :1], args.sample_tokens)[0].tolist()))


if __name__ == "__main__":
    from . import cli  # the command line only: the model above reads without the rest of the package

    cli.run(main)
