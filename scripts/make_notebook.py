"""Write notebooks/gpt_from_scratch.ipynb (outputs cleared). Edit the cells here, then rerun this script."""

from pathlib import Path

import nbformat

CELLS = [
    (
        "md",
        """# A GPT from scratch

From token embeddings to a trained model that runs in 🤗 transformers' `generate`, one step at a time. The code
is `gpt_scratch/educational.py`; every class there is used below. Runs on a laptop CPU in about a minute.""",
    ),
    (
        "code",
        """import inspect, json, textwrap
import torch
import torch.nn.functional as F
from gpt_scratch.educational import GPT, Head, MultiHeadAttention, CharTokenizer, train, to_fast, load_from_fast

torch.manual_seed(0)
# A small local text: the source of Python's json package (real text, on every machine).
import json.decoder, json.encoder
text = inspect.getsource(json) + inspect.getsource(json.decoder) + inspect.getsource(json.encoder)
tokenizer = CharTokenizer(text)
data = torch.tensor(tokenizer.encode(text))
print(f"{len(text):,} characters, vocabulary of {tokenizer.vocab_size} characters")""",
    ),
    (
        "md",
        """## 1. Embeddings
Each token id becomes a learned vector (what it means) plus a learned vector for its position (where it is):
attention by itself cannot tell order.""",
    ),
    (
        "code",
        """C, T = 32, 8
token_embedding = torch.nn.Embedding(tokenizer.vocab_size, C)
position_embedding = torch.nn.Embedding(T, C)
idx = data[:T].unsqueeze(0)                                   # (B=1, T)
x = token_embedding(idx) + position_embedding(torch.arange(T))  # (1, T, C)
print(repr(tokenizer.decode(idx[0].tolist())), tuple(x.shape))""",
    ),
    (
        "md",
        """## 2. One attention head, by hand
Queries ask, keys answer, values are passed on. Scores are scaled by 1/sqrt(head size) so softmax does not
saturate, and the causal mask hides the future: position t may only look at 0..t.""",
    ),
    (
        "code",
        """hs = 8
q_proj, k_proj, v_proj = (torch.nn.Linear(C, hs) for _ in range(3))
q, k, v = q_proj(x), k_proj(x), v_proj(x)                    # (1, T, hs) each
scores = q @ k.transpose(-2, -1) / hs ** 0.5                 # (1, T, T)
mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
print(mask.int())
weights = F.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
print(weights[0].detach().numpy().round(2))                  # each row sums to 1, zeros above the diagonal
out = weights @ v                                            # (1, T, hs)

head = Head(C, hs, T)                                        # the same, as a module
head.query, head.key, head.value = q_proj, k_proj, v_proj
torch.testing.assert_close(head(x), out)""",
    ),
    (
        "md",
        """## 3. Many heads
Several heads look for different things; their outputs are concatenated and projected back to width C.""",
    ),
    (
        "code",
        """mha = MultiHeadAttention(C, n_head=4, n_positions=T)
manual = mha.proj(torch.cat([h(x) for h in mha.heads], dim=-1))
torch.testing.assert_close(mha(x), manual)
print(tuple(mha(x).shape))""",
    ),
    (
        "md",
        """## 4. Blocks and the model
A block adds attention, then an MLP, to the residual stream, each reading a LayerNorm'd copy (pre-LN). The model
stacks blocks and ends with a LayerNorm and a linear layer to one score per vocabulary entry.""",
    ),
    (
        "code",
        """model = GPT(tokenizer.vocab_size, n_positions=64, n_embd=64, n_head=4, n_layer=2)
print(f"{sum(p.numel() for p in model.parameters()):,} parameters")
logits, loss = model(data[None, :64], data[None, 1:65])
uniform = torch.log(torch.tensor(float(tokenizer.vocab_size))).item()
print(tuple(logits.shape), f"loss before training {loss.item():.3f} (uniform guessing: {uniform:.3f})")""",
    ),
    (
        "md",
        """## 5. Train
Sample windows, predict every next character, step downhill.""",
    ),
    (
        "code",
        """losses = train(model, data, steps=300, batch_size=16, lr=3e-3, log_every=50)
assert losses[-1] < losses[0]""",
    ),
    ("md", """## 6. Sample"""),
    (
        "code",
        """torch.manual_seed(1)
print(tokenizer.decode(model.generate(data[None, :1], 200, temperature=0.8)[0].tolist()))""",
    ),
    (
        "md",
        """## 7. The same weights in `GPTScratchForCausalLM`
The fast model fuses all heads' queries, keys and values into one matrix; `to_fast` stacks them. Same logits, and
now transformers' `generate` (greedy, beam search, sampling, KV cache), `save_pretrained` and `push_to_hub` work.""",
    ),
    (
        "code",
        """fast = to_fast(model)
ids = data[None, :64]
with torch.no_grad():
    torch.testing.assert_close(fast(ids).logits, model(ids)[0])
    torch.testing.assert_close(load_from_fast(fast)(ids)[0], model(ids)[0])
out = fast.generate(data[None, :20], max_new_tokens=40, do_sample=False)  # 60 tokens: within n_positions
print(tokenizer.decode(out[0].tolist()))""",
    ),
]


def main() -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [
        nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src) for kind, src in CELLS
    ]
    path = Path(__file__).resolve().parent.parent / "notebooks" / "gpt_from_scratch.ipynb"
    nbformat.write(notebook, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
