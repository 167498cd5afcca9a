"""tiktoken's encoding and the saved transformers tokenizer agree on every id, and decoding round-trips."""

import hashlib

import pytest
import tiktoken
from transformers import AutoTokenizer

from gpt_scratch.tokenizer import EOT_ID, gpt2_encoding, gpt2_tokenizer
from gpt_scratch.tokenizer import gpt2 as tok_module

TEXTS = [
    "Hello, world! This is GPT-2.",
    "naïve café — Zürich, 東京, Москва, عربى, हिन्दी",
    "emoji 🤖👍🏽 family 👨‍👩‍👧 flags 🇫🇷",
    "runs   of    spaces\n\n\nand\ttabs\t\t and trailing   ",
    "   leading spaces and \r\n windows newlines\r\n",
    "def f(x):\n    return {'a': [x ** 2, 3.14e-10]}  # comment\n",
    "I'm sure they'll say we've done what you'd expect: isn't it?",
    "first<|endoftext|>second <|endoftext|> third",
    "1234567890 12 345 6,789.01",
    "",
]


@pytest.fixture(scope="module")
def hf_tokenizer():
    return gpt2_tokenizer()


@pytest.mark.parametrize("text", TEXTS)
def test_hf_tokenizer_ids_equal_tiktoken(hf_tokenizer, text):
    expected = gpt2_encoding().encode(text, allowed_special={"<|endoftext|>"})
    assert hf_tokenizer(text)["input_ids"] == expected
    assert hf_tokenizer.decode(expected) == text


def test_ordinary_batch_encoding_treats_special_text_as_text():
    encoding = gpt2_encoding()
    ids = encoding.encode_ordinary_batch(["a<|endoftext|>b"])[0]
    assert EOT_ID not in ids
    assert encoding.decode(ids) == "a<|endoftext|>b"


def test_vocabulary_matches_tiktoken_gpt2_definition():
    encoding = gpt2_encoding()
    assert encoding.n_vocab == 50257
    assert encoding.eot_token == EOT_ID
    # The vendored file's ranks are exactly what tiktoken loads for GPT-2 (same 256 byte tokens first).
    ranks = tiktoken.load.load_tiktoken_bpe(str(tok_module.VOCAB_FILE))
    assert len(ranks) == 50256 and ranks[b"!"] == 0 and ranks[b" the"] == 262


def test_saved_tokenizer_round_trips_through_auto_tokenizer(tmp_path, hf_tokenizer):
    hf_tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in TEXTS:
        assert loaded(text)["input_ids"] == hf_tokenizer(text)["input_ids"]
    assert (loaded.eos_token_id, loaded.pad_token_id, loaded.padding_side) == (EOT_ID, EOT_ID, "left")


def test_vendored_vocabulary_has_the_published_hash():
    assert hashlib.sha256(tok_module.VOCAB_FILE.read_bytes()).hexdigest() == tok_module.VOCAB_SHA256


def test_corrupted_vocabulary_is_rejected(tmp_path):
    bad = tmp_path / "gpt2.tiktoken"
    bad.write_bytes(tok_module.VOCAB_FILE.read_bytes()[:-10])
    with pytest.raises(ValueError, match="sha256 .* expected 306cd27f"):
        tok_module._verified_vocab_path(bad)


def test_missing_vocabulary_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="GPT-2 vocabulary not found"):
        tok_module._verified_vocab_path(tmp_path / "nope.tiktoken")
