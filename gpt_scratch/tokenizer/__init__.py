"""Tokenizers: GPT-2's byte-level BPE (vendored, offline) and ones you train on your own corpus.

- ``gpt2``: GPT-2's vocabulary as a tiktoken ``Encoding`` and as a transformers fast tokenizer, ids identical;
- ``text_tokenizer``: ``TextTokenizer``, the tokenizer a run trains with (``tokenizer: gpt2 | DIR``), and
  ``load_tokenizer``;
- ``trainer``: ``python -m gpt_scratch.tokenizer train``, a byte-level BPE trained on any text source.
"""

from ..lazy import lazy_exports

# imported on first use: ``python -m gpt_scratch.tokenizer --help`` answers before torch loads
__getattr__, __dir__ = lazy_exports(__name__, {
    ".gpt2": ["EOT_ID", "EOT_TOKEN", "GPT2_SPLIT_PATTERN", "VOCAB_FILE", "VOCAB_SHA256", "gpt2_encoding",
              "gpt2_tokenizer"],
    ".text_tokenizer": ["TextTokenizer", "load_tokenizer", "tokenizer_exists"],
})  # fmt: skip

__all__ = __dir__()
