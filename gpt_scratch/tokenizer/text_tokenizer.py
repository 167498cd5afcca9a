"""The tokenizer a run trains with: GPT-2's (``tokenizer: gpt2``) or a directory ``python -m gpt_scratch.tokenizer
train`` wrote (``tokenizer: DIR``).

A ``TextTokenizer`` is what the data pipeline, validation and export need of it: a tiktoken ``Encoding`` (fast batch
encoding in the pipeline's own threads), the transformers tokenizer saved beside the model, the ``<|endoftext|>`` id,
every token's length in bytes (bits per byte), and an identity (name and sha256) that token shards and checkpoints
record, so that tokens of one tokenizer are never read with another.

A trained directory is a transformers fast tokenizer (``tokenizer.json``, ``tokenizer_config.json``): a byte-level
BPE behind a regex split. tiktoken runs the same BPE exactly: its merge ranks are the token ids, because the trainer
numbers each new token in merge order, as GPT-2's vocabulary does (tests/test_own_tokenizer.py checks the ids agree
with transformers' on real text). tiktoken encodes several times faster than ``tokenizers`` here.
"""

import functools
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tiktoken
import torch
from transformers import PreTrainedTokenizerFast

from .gpt2 import (
    EOT_TOKEN,
    GPT2_SPLIT_PATTERN,
    VOCAB_SHA256,
    _gpt2_tokenizer_json,
    fast_tokenizer,
    gpt2_encoding,
    gpt2_tokenizer,
)

GPT2 = "gpt2"
FILES = ("tokenizer.json", "tokenizer_config.json")
TRAIN_HINT = "python -m gpt_scratch.tokenizer train --data python-stdlib --vocab_size 4096 --out DIR"


@functools.cache
def byte_of_char() -> dict[str, int]:
    """Byte-level BPE's alphabet: each byte is written as one printable character (GPT-2's ``bytes_to_unicode``):
    printable Latin-1 bytes as themselves, the other 68 as the characters from U+0100 up, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    chars = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(others)}
    return {char: byte for byte, char in chars.items()}


@dataclass(frozen=True)
class TextTokenizer:
    name: str  # "gpt2", or the directory as given
    sha256: str  # of the vocabulary: GPT-2's vendored file, or the directory's tokenizer.json
    encoding: tiktoken.Encoding
    definition: str  # tokenizer.json's text

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    @property
    def eot_id(self) -> int:
        return self.encoding.eot_token

    @property
    def split_pattern(self) -> str:
        return self.encoding._pat_str

    def encodes_like(self, other: "TextTokenizer") -> bool:
        """Whether every text becomes the same ids under both: the same split, ranked vocabulary and end of text."""
        return (
            self.split_pattern == other.split_pattern
            and self.encoding._mergeable_ranks == other.encoding._mergeable_ranks
            and self.eot_id == other.eot_id
        )

    @property
    def description(self) -> str:
        """What the model card says the vocabulary is."""
        return "GPT-2 BPE" if self.name == GPT2 else f"byte-level BPE {self.name}"

    def identity(self) -> dict[str, str]:
        """What shards and checkpoints record: the name says which, the sha256 proves it."""
        return {"name": self.name, "sha256": self.sha256}

    def mismatch(self, what: str, recorded: dict[str, str]) -> str | None:
        """Why tokens made with the ``recorded`` identity (shards, a checkpoint) cannot be read with this tokenizer
        (their ids would mean other text), or None. GPT-2's was once recorded by ``vocab_sha256``."""
        sha256 = recorded.get("sha256") or recorded.get("vocab_sha256")
        if sha256 == self.sha256:
            return None
        again = "another version of " if recorded.get("name") == self.name else ""
        return (
            f"{what} was made with tokenizer {recorded.get('name')!r} (sha256 {str(sha256)[:12]}), but this run's "
            f"tokenizer is {again}{self.name!r} (sha256 {self.sha256[:12]}): the same ids would mean other text"
        )

    def encode_documents(self, texts: list[str], pool: ThreadPoolExecutor) -> np.ndarray:
        """The tokens of ``texts`` as one uint32 array, ``<|endoftext|>`` before each document.

        Text that merely looks like a special token is encoded as ordinary text; tiktoken releases the GIL, so the
        pool's threads run in parallel, and its numpy output skips building Python int lists.
        """
        eot = np.array([self.eot_id], dtype=np.uint32)
        encode = self.encoding.encode_to_numpy
        arrays = pool.map(lambda text: encode(text, allowed_special=set(), disallowed_special=()), texts)
        return np.concatenate([piece for ids in arrays for piece in (eot, ids)]) if texts else eot[:0]

    def token_bytes(self) -> torch.Tensor:
        """Each id's length in UTF-8 bytes (``<|endoftext|>``: 0), for bits per byte: the bytes a target token spells
        are the bytes of text it scores."""
        lengths = [0 if i == self.eot_id else len(self.encoding.decode_single_token_bytes(i))
                   for i in range(self.vocab_size)]  # fmt: skip
        return torch.tensor(lengths, dtype=torch.int64)

    def hf_tokenizer(self, model_max_length: int = 1024) -> PreTrainedTokenizerFast:
        """The transformers fast tokenizer with the same ids (``<|endoftext|>`` as bos, eos, unk and pad)."""
        return fast_tokenizer(self.definition, model_max_length)


def retrain_advice(spec: str) -> str:
    """How to get a usable tokenizer when ``spec`` names a damaged one: a new directory (the trainer never writes over
    one that holds a tokenizer, and models trained with the old one need it unchanged)."""
    fresh = f"{spec.rstrip('/')}-new"
    return f"train a new one into another directory: `{TRAIN_HINT.replace('DIR', fresh)}`, then use tokenizer: {fresh}"


def tokenizer_exists(spec: str) -> bool:
    """Whether ``spec`` is GPT-2's or names a directory with anything in it (which is never trained over)."""
    directory = Path(spec).expanduser()
    return spec == GPT2 or (directory.is_dir() and any(directory.iterdir()))


def load_tokenizer(spec: str | None) -> TextTokenizer:
    """``"gpt2"`` (or None, a config's default) or a tokenizer directory, as a ``TextTokenizer``; a missing or
    unusable directory is a one-line error that says what to do."""
    if spec is None or spec == GPT2:
        return _gpt2()
    directory = Path(spec).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(
            f"tokenizer directory {spec} does not exist; train one with `{TRAIN_HINT.replace('DIR', spec)}`, set "
            "tokenizer_vocab_size for train.py to train it first, or use tokenizer: gpt2"
        )
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"tokenizer directory {spec} lacks {' and '.join(missing)} (a transformers fast-tokenizer directory has "
            f"both); restore it from where the directory came from, or {retrain_advice(spec)}"
        )
    text = (directory / "tokenizer.json").read_text(encoding="utf-8")
    return _from_definition(spec, text, hashlib.sha256(text.encode("utf-8")).hexdigest())


@functools.cache
def _gpt2() -> TextTokenizer:
    return TextTokenizer(GPT2, VOCAB_SHA256, gpt2_encoding(), _gpt2_tokenizer_json())


@functools.cache
def _from_definition(name: str, text: str, sha256: str) -> TextTokenizer:
    """A tokenizer.json as tiktoken's Encoding: its vocabulary as merge ranks, its split pattern, one special."""
    try:
        definition = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{name}/tokenizer.json is not valid JSON ({error}); {retrain_advice(name)}") from None
    model, pre = definition.get("model") or {}, definition.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    patterns = [s["pattern"].get("Regex") for s in steps if s.get("type") == "Split"]
    if model.get("type") != "BPE" or not patterns or not any(s.get("type") == "ByteLevel" for s in steps):
        raise ValueError(
            f"{name}/tokenizer.json is not a byte-level BPE behind a regex split (as `python -m gpt_scratch.tokenizer "
            "train` writes); gpt-scratch trains only on those (or on tokenizer: gpt2)"
        )
    specials = {t["content"]: t["id"] for t in definition.get("added_tokens", []) if t.get("special")}
    if EOT_TOKEN not in specials:
        raise ValueError(f"{name}/tokenizer.json has no {EOT_TOKEN} special token, which separates documents")
    chars = byte_of_char()
    for token, rank in model["vocab"].items():
        if foreign := next((c for c in token if c not in chars), None):
            raise ValueError(
                f"{name}/tokenizer.json: token {token!r} (id {rank}) holds {foreign!r}, which is not a byte-level "
                "character: not a byte-level BPE (train one with `python -m gpt_scratch.tokenizer train`)"
            )
    check_merge_order(name, model)
    ranks = {bytes(chars[c] for c in token): rank for token, rank in model["vocab"].items()}
    missing = 256 - sum(len(token) == 1 for token in ranks)
    if missing:
        raise ValueError(f"{name}/tokenizer.json lacks {missing} of the 256 byte tokens: not a byte-level BPE")
    encoding = tiktoken.Encoding(
        name=name, pat_str=patterns[0], mergeable_ranks=ranks, special_tokens={EOT_TOKEN: specials[EOT_TOKEN]}
    )
    check_same_ids(name, text, encoding, ranks)
    return TextTokenizer(name, sha256, encoding, text)


# Text of many kinds (scripts, digits, code, whitespace runs, emoji), and then every token of the vocabulary: encoded
# at load through both tokenizers.
PROBE_TEXT = (
    "The quick brown fox, 1,234.56 km/h! naïve café — Zürich, 東京, Москва 🤖👍🏽\n\tdef f(x):\n        return x ** 2"
    "  # comment\r\n<div class='a'>&amp;</div> don't we'll I've THE END   \n\n\n"
)


def check_merge_order(name: str, model: dict) -> None:
    """tiktoken merges the pair whose token has the lowest id first, ``tokenizers`` the merge listed first: the same
    BPE only when each merge makes a token with a higher id than every earlier merge's, as trainers and GPT-2 number
    them. Any edit of the ids breaks that order, though a probe text may not show it."""
    vocab, highest = model["vocab"], -1
    for index, merge in enumerate(model.get("merges", [])):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        made = vocab.get(left + right)
        if made is None or made < highest:  # GPT-2 lists two merges of some tokens (Ġ + the, Ġt + he)
            after = f"after id {highest} of the merge before it" if made is not None else "but it has no id"
            raise ValueError(
                f"{name}/tokenizer.json is not numbered in merge order (its ids were edited, or another trainer made "
                f"it): merge {index} ({left!r} + {right!r}) makes id {made}, {after}; the data would be encoded with "
                "other ids than the exported tokenizer gives. Train one with `python -m gpt_scratch.tokenizer train`"
            )
        highest = made


def check_same_ids(name: str, text: str, encoding: tiktoken.Encoding, ranks: dict[bytes, int]) -> None:
    """The data pipeline encodes with tiktoken, the exported model with ``tokenizers``: the same BPE only when the ids
    follow the merge order (tiktoken merges the lowest id first, ``tokenizers`` the merge listed first), as the
    trainer and GPT-2 number them. Refuse a definition on which they disagree (ids edited, or from another trainer):
    a fixed text and the text of every token, through both (a few milliseconds for a few thousand tokens)."""
    from tokenizers import Tokenizer

    tokens = " ".join(token.decode("utf-8", "replace") for token, rank in sorted(ranks.items(), key=lambda t: t[1]))
    probe = PROBE_TEXT + tokens
    expected = Tokenizer.from_str(text).encode(probe, add_special_tokens=False).ids
    ours = encoding.encode_ordinary(probe)
    if ours != expected:
        at = next((i for i, (a, b) in enumerate(zip(ours, expected)) if a != b), min(len(ours), len(expected)))
        piece = encoding.decode(ours[max(at - 3, 0) : at + 3])
        raise ValueError(
            f"{name}/tokenizer.json is not numbered in merge order (its ids were edited, or another trainer made it): "
            f"the data would be encoded with other ids than the exported tokenizer gives (first near {piece!r}). "
            "Train one with `python -m gpt_scratch.tokenizer train`"
        )


def saved_tokenizer(model_dir: str | Path, model_max_length: int) -> PreTrainedTokenizerFast:
    """The tokenizer of a saved model directory, to save beside a converted copy of the model: GPT-2's when its ids
    are GPT-2's (so the copy keeps GPT-2's classic files), else the directory's own (a trained one). A directory
    without a tokenizer gets GPT-2's."""
    if not (Path(model_dir) / "tokenizer.json").is_file():
        return gpt2_tokenizer(model_max_length)
    own, gpt2 = load_tokenizer(str(model_dir)), _gpt2()
    return gpt2_tokenizer(model_max_length) if own.encodes_like(gpt2) else own.hf_tokenizer(model_max_length)


def uses_gpt2_split(tokenizer: PreTrainedTokenizerFast) -> bool:
    """Whether ``tokenizer`` splits text exactly as GPT-2 does: then transformers' ``GPT2Tokenizer`` class
    reproduces it (transformers 5 rebuilds GPT-2's split from that class name, whatever tokenizer.json says)."""
    pre = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    return any(step.get("type") == "Split" and step["pattern"].get("Regex") == GPT2_SPLIT_PATTERN for step in steps)
