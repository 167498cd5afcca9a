"""Train a byte-level BPE on your own corpus with Hugging Face ``tokenizers``, as nanochat and GPT-2 did.

    python -m gpt_scratch.tokenizer train --data python-stdlib --vocab_size 4096 --out runs/tokenizer-stdlib

- Byte-level: every byte is a token, so any text encodes (no unknown token) and decodes back exactly.
- Split first by a regex, as GPT-2 does, so no token crosses a word, number or punctuation boundary. The default,
  ``gpt2-no-lookahead``, is GPT-2's pattern without its ``\\s+(?!\\S)`` branch: a run of whitespace stays whole
  instead of leaving its last space to the next word (Python's indentation becomes one token, ``def`` another).
  Measured on python-stdlib at 4096 tokens: 3.60 bytes per token against GPT-2's pattern's 3.58, and tiktoken
  encodes it twice as fast (the lookahead forces a backtracking regex engine); ``--pattern gpt2`` keeps GPT-2's.
- ``<|endoftext|>`` is the one special token, last, as in GPT-2: the document separator training packs with.
- The vocabulary is rounded up to a multiple of 128 (embedding and head rows that tile the GPU's matmuls).
- The source's first ``--val_docs`` documents are held out, as train.py holds them out for validation: the tokenizer
  never sees the text its model's bits per byte are measured on, and the summary reports bytes per token there.

The directory it writes (tokenizer.json + tokenizer_config.json) is what ``AutoTokenizer.from_pretrained`` loads and
what ``tokenizer: DIR`` in train.py's config names; it is written beside its destination and renamed into place.
"""

import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..chat_template import CHAT_TOKENS
from ..storage import holds_working_directory
from .choices import PATTERNS
from .files import save_tokenizer
from .gpt2 import EOT_TOKEN, fast_tokenizer, gpt2_encoding
from .text_tokenizer import load_tokenizer

ROUND_TO = 128
MIN_VOCAB = 256 + 1  # every byte, and <|endoftext|>
NOT_TEXT_WARNING = 0.01  # above this fraction of its characters, a corpus is probably binary data


@dataclass
class TrainingSummary:
    documents: int
    bytes: int
    seconds: float
    vocab_size: int
    held_out_bytes_per_token: float
    gpt2_bytes_per_token: float
    not_text_fraction: float = 0.0

    def line(self, out_dir: str) -> str:
        line = (
            f"trained {self.vocab_size:,} tokens on {self.documents:,} documents ({self.bytes / 1e6:,.1f} MB) in "
            f"{self.seconds:.1f} s -> {out_dir} | held-out text: {self.held_out_bytes_per_token:.2f} bytes per token "
            f"(GPT-2's: {self.gpt2_bytes_per_token:.2f})"
        )
        if self.not_text_fraction > NOT_TEXT_WARNING:
            line += (
                f"\nWARNING: {self.not_text_fraction:.0%} of the corpus's characters are not text (undecodable bytes "
                "or control characters): is the data a binary file? The tokenizer learned them; check the source"
            )
        return line


def rounded_vocab_size(vocab_size: int) -> int:
    if vocab_size < MIN_VOCAB:
        raise ValueError(
            f"vocab_size ({vocab_size}) is too small: a byte-level BPE needs the 256 byte tokens and {EOT_TOKEN} "
            f"({MIN_VOCAB}), and merges to be of use; try 4096"
        )
    return -(-vocab_size // ROUND_TO) * ROUND_TO


class Corpus(Protocol):
    """The text a tokenizer is trained on (``gpt_scratch.data.SourceTexts`` reads a source so): the held-out
    documents, and the rest as they are read, counted."""

    name: str  # where the text comes from, for messages
    val_docs: int  # how many of the first documents are held out
    held_out: list[str]  # those documents, never trained on: the summary measures bytes per token there
    documents: int  # read so far (after iterating: all), with their bytes and characters that are not text
    bytes: int
    not_text: int

    def __iter__(self) -> Iterator[str]: ...


def check_out_dir(out_dir: Path) -> None:
    """Refuse, before the corpus is read, a destination the trained tokenizer cannot be renamed into."""
    fix = "choose another --out (a new directory, e.g. runs/tokenizer-8k)"
    if (out_dir / "tokenizer.json").exists():
        raise FileExistsError(f"{out_dir} already holds a tokenizer (models trained with it need it unchanged); {fix}")
    if holds_working_directory(out_dir):
        raise ValueError(f"{out_dir} is the working directory or holds it; {fix}")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file, not a directory; {fix}")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} is not empty, and the tokenizer is written as a whole new directory; {fix}")
    probe = out_dir.parent if out_dir.parent.exists() else next(p for p in out_dir.parents if p.exists())
    if not os.access(probe, os.W_OK):
        raise ValueError(f"{probe} is not writable, so {out_dir} cannot be made there; {fix}")


def train_tokenizer(
    corpus: Corpus,
    vocab_size: int,
    out_dir: str | Path,
    pattern: str = "gpt2-no-lookahead",
    model_max_length: int = 1024,
    chat_tokens: bool = False,
) -> TrainingSummary:
    """Train, check and save a byte-level BPE on ``corpus`` (e.g. ``SourceTexts(TextSource("python-stdlib"),
    val_docs=200)``); nothing is written unless it all succeeds. ``chat_tokens`` reserves the chat template's four
    special tokens (``gpt_scratch.chat_template``) before ``<|endoftext|>``: a model pretrained with this tokenizer
    has their rows, and its chat fine-tune adds none."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    if pattern not in PATTERNS:
        raise ValueError(f"pattern {pattern!r} must be one of {', '.join(PATTERNS)}")
    target = rounded_vocab_size(vocab_size)
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    held_out = corpus.held_out
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERNS[pattern]), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])  # fmt: skip
    tokenizer.decoder = decoders.ByteLevel()
    special = [*(CHAT_TOKENS if chat_tokens else ()), EOT_TOKEN]  # added after training, <|endoftext|> the last id
    trainer = trainers.BpeTrainer(
        vocab_size=target - len(special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,  # our bar counts documents as they stream in; the merges take a second after
    )
    started = time.perf_counter()
    tokenizer.train_from_iterator(corpus, trainer)
    if corpus.documents == 0 and not any(text.strip() for text in held_out):
        raise ValueError(f"{corpus.name} holds no text (only empty files or documents); point --data at text")
    if corpus.documents == 0:
        raise ValueError(
            f"no documents to train on: {corpus.name} has {len(held_out)} document(s), all held out by --val_docs "
            f"{corpus.val_docs} (or --max_docs/--max_bytes is 0); use more text or a smaller --val_docs"
        )
    if tokenizer.get_vocab_size() != target - len(special):
        raise ValueError(
            f"the corpus yields only {tokenizer.get_vocab_size() + len(special)} tokens, fewer than vocab_size "
            f"{target}: give more text (--max_docs/--max_bytes) or a smaller --vocab_size"
        )
    tokenizer.add_special_tokens(special)
    seconds = time.perf_counter() - started

    staging = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        save_tokenizer(fast_tokenizer(tokenizer.to_str(), model_max_length), staging)
        trained = load_tokenizer(str(staging))  # the checks train.py will run, before anything is in place
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        if out_dir.exists() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # an empty directory the user made for it
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    held_bytes = sum(len(text.encode("utf-8", "surrogatepass")) for text in held_out)
    ours = sum(map(len, trained.encoding.encode_ordinary_batch(held_out)))
    gpt2 = sum(map(len, gpt2_encoding().encode_ordinary_batch(held_out)))
    return TrainingSummary(corpus.documents, corpus.bytes, seconds, trained.vocab_size, held_bytes / max(ours, 1),
                           held_bytes / max(gpt2, 1), corpus.not_text / max(corpus.bytes, 1))  # fmt: skip


@contextmanager
def training_lock(out_dir: str | Path, say: Callable[[str], None] = print) -> Iterator[None]:
    """One trainer at a time for a tokenizer directory: two runs that need the same missing tokenizer (the README's
    quickstarts started side by side) would both train it, and the second rename would fail. The second waits for
    the first, then finds the tokenizer there. An OS lock on a hidden file beside the directory, released by the
    kernel however the holder ends."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(out_dir.with_name(f".{out_dir.name}.lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"tokenizer: another run is training {out_dir}; waiting for it, to use the same one")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield
