"""GPT-2's byte-level BPE, offline, in the two forms the project needs.

- ``gpt2_encoding()``: a ``tiktoken.Encoding`` for the data pipeline (fast, multi-threaded batch encoding).
- ``gpt2_tokenizer()``: a transformers fast tokenizer (tokenizer.json) that is saved beside every model, so
  ``AutoTokenizer.from_pretrained(model_dir)`` and ``pipeline`` work with no network.

Both are built from the vocabulary vendored in ``assets/gpt2.tiktoken`` (see ``assets/README.md``); its sha256 is
checked on load so a corrupted or swapped file fails loudly instead of producing wrong ids.
"""

import functools
import hashlib
from pathlib import Path

import tiktoken
from tiktoken.load import load_tiktoken_bpe
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter

from .choices import GPT2_SPLIT_PATTERN

VOCAB_FILE = Path(__file__).parent.parent / "assets" / "gpt2.tiktoken"
VOCAB_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
EOT_TOKEN = "<|endoftext|>"
EOT_ID = 50256


def _verified_vocab_path(path: Path = VOCAB_FILE) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"GPT-2 vocabulary not found at {path}; reinstall gpt-scratch")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != VOCAB_SHA256:
        raise ValueError(
            f"GPT-2 vocabulary at {path} has sha256 {digest}, expected {VOCAB_SHA256}; the file is corrupted or was "
            "replaced: reinstall gpt-scratch"
        )
    return str(path)


@functools.cache
def gpt2_encoding() -> tiktoken.Encoding:
    """tiktoken's GPT-2 encoding, built from the vendored vocabulary (no download)."""
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_SPLIT_PATTERN,
        mergeable_ranks=load_tiktoken_bpe(_verified_vocab_path()),
        special_tokens={EOT_TOKEN: EOT_ID},
    )


@functools.cache
def _gpt2_tokenizer_json() -> str:
    """The fast tokenizer's definition, built once per process (converting the BPE ranks takes about a second)."""
    converter = TikTokenConverter(
        vocab_file=_verified_vocab_path(), pattern=GPT2_SPLIT_PATTERN, extra_special_tokens=[EOT_TOKEN]
    )
    return converter.converted().to_str()


def gpt2_tokenizer(model_max_length: int = 1024) -> PreTrainedTokenizerFast:
    """A transformers fast tokenizer with ids identical to ``gpt2_encoding()``'s."""
    return fast_tokenizer(_gpt2_tokenizer_json(), model_max_length)


def fast_tokenizer(definition: str, model_max_length: int = 1024) -> PreTrainedTokenizerFast:
    """A tokenizer.json's text as a transformers fast tokenizer set up as GPT-2's: ``<|endoftext|>`` as bos, eos,
    unk and pad token, padding on the left so batched generation continues each prompt from its last real token."""
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(definition),
        bos_token=EOT_TOKEN,
        eos_token=EOT_TOKEN,
        unk_token=EOT_TOKEN,
        pad_token=EOT_TOKEN,
        padding_side="left",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
