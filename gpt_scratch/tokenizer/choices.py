"""The tokenizer trainer's choices, in a module light enough for ``--help`` to read (no tiktoken, transformers or
torch)."""

# GPT-2's pre-tokenizer split (from OpenAI's encoder.py). tiktoken's and transformers' converter defaults differ from
# it, and any difference changes the ids.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

PATTERNS = {
    "gpt2-no-lookahead": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+""",
    "gpt2": GPT2_SPLIT_PATTERN,
}
VAL_DOCS = 200  # documents held out by default: train.py's default val_docs
