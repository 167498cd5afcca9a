"""Tokenizers: GPT-2's byte-level BPE (vendored, offline) and ones you train on your own corpus.

- ``gpt2``: GPT-2's vocabulary as a tiktoken ``Encoding`` and as a transformers fast tokenizer, ids identical;
- ``text_tokenizer``: ``TextTokenizer``, the tokenizer a run trains with (``tokenizer: gpt2 | DIR``), and
  ``load_tokenizer``;
- ``trainer``: ``python -m gpt_scratch.tokenizer train``, a byte-level BPE trained on any text source.
"""

from .gpt2 import EOT_ID, EOT_TOKEN, GPT2_SPLIT_PATTERN, VOCAB_FILE, VOCAB_SHA256, gpt2_encoding, gpt2_tokenizer
from .text_tokenizer import TextTokenizer, load_tokenizer, tokenizer_exists

__all__ = [
    "EOT_ID",
    "EOT_TOKEN",
    "GPT2_SPLIT_PATTERN",
    "VOCAB_FILE",
    "VOCAB_SHA256",
    "TextTokenizer",
    "gpt2_encoding",
    "gpt2_tokenizer",
    "load_tokenizer",
    "tokenizer_exists",
]
