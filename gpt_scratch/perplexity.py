"""Validation loss and perplexity of any causal LM on any text source, with a sliding window.

Documents are read in canonical order (no shuffling), joined with ``<|endoftext|>`` as in training, and scored in
windows of ``seq_len`` tokens that advance by ``stride``: each window predicts only the tokens the previous ones did
not, with the rest of the window as context (the sliding-window recipe of transformers' perplexity guide, without
its gap: no token at a window boundary goes unscored). ``stride == seq_len`` gives back-to-back windows; a smaller
stride gives every token more context and a lower, truer perplexity.

Text is tokenized with the model's own tokenizer, and bits per byte (summed nats / ln 2 / the UTF-8 bytes the
scored tokens spell) is reported beside the loss: unlike perplexity, it compares models with different tokenizers.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import DocumentStream, TextSource
from .hellaswag import model_max_length
from .tokenizer.text_tokenizer import byte_of_char


def encode_documents(tokenizer, docs: list[str]) -> np.ndarray:
    """``docs`` in the tokens of a transformers ``tokenizer`` (batched, in its own threads), its eos token before
    each, as training packs them; text that looks like a special token is encoded as text."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the model's tokenizer has no eos token to separate documents with; set tokenizer.eos_token")
    encoded = tokenizer(docs, add_special_tokens=False, split_special_tokens=True, verbose=False)["input_ids"]
    return np.array([t for ids in encoded for t in (tokenizer.eos_token_id, *ids)], dtype=np.int64)


def source_tokens(source: TextSource, max_tokens: int, tokenizer=None) -> torch.Tensor:
    """The first ``max_tokens`` tokens of ``source`` in canonical order, ``<|endoftext|>`` before each document, in
    ``tokenizer``'s ids (GPT-2's when None)."""
    if tokenizer is None:
        from .tokenizer import gpt2_tokenizer

        tokenizer = gpt2_tokenizer()
    stream = DocumentStream(source, shuffle=False, epochs=1)
    pieces, count = [], 0
    while count < max_tokens:
        docs = stream.next_documents(64)
        if not docs:
            break
        pieces.append(encode_documents(tokenizer, docs))
        count += len(pieces[-1])
    if not pieces:
        raise ValueError(f"data source {source.path} has no documents")
    return torch.from_numpy(np.concatenate(pieces)[:max_tokens])


def token_byte_lengths(tokenizer) -> torch.Tensor:
    """Each id's length in UTF-8 bytes (special tokens: 0). Exact for byte-level BPE (GPT-2's, those gpt-scratch
    trains), whose tokens are written in a 256-character alphabet, one character per byte; for any other
    tokenizer, the length of the id decoded alone."""
    alphabet, specials = byte_of_char(), set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    byte_level = all(i in specials or set(token) <= alphabet.keys() for i, token in enumerate(tokens))
    lengths = [0 if i in specials else len(token) if byte_level else len(tokenizer.decode([i]).encode("utf-8"))
               for i, token in enumerate(tokens)]  # fmt: skip
    return torch.tensor(lengths, dtype=torch.int64)


@torch.no_grad()
def evaluate_perplexity(
    model,
    tokens: torch.Tensor,
    seq_len: int | None = None,
    stride: int | None = None,
    progress: bool = False,
    token_bytes: torch.Tensor | None = None,
) -> dict[str, float]:
    """``{"loss", "perplexity", "tokens"}``: mean next-token cross-entropy (nats) over ``tokens`` and its exp; with
    ``token_bytes`` (``token_byte_lengths``), also ``bits_per_byte`` and ``bytes``.

    Every token but the first is predicted exactly once. Targets are taken ``stride`` at a time; each chunk is
    predicted by one forward pass over the ``seq_len`` tokens that end just before its last target, so the earliest
    target of a chunk sees ``seq_len - stride`` tokens of context (at least; all of them at the start of the text).
    """
    seq_len = seq_len or model_max_length(model)
    stride = stride or seq_len
    if not 0 < stride <= seq_len:
        raise ValueError(f"stride ({stride}) must be in 1..seq_len ({seq_len})")
    if len(tokens) < 2:
        raise ValueError("need at least two tokens to measure perplexity")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_nll = 0.0
    chunks = range(1, len(tokens), stride)
    for first in tqdm(chunks, desc="perplexity", disable=not progress, leave=False):
        end = min(first + stride, len(tokens))  # targets tokens[first:end]
        start = max(0, end - 1 - seq_len)  # inputs tokens[start:end - 1] predict tokens[start + 1:end]
        inputs = tokens[start : end - 1].unsqueeze(0).to(device)
        # Only the chunk's positions reach the LM head (most of a small model's cost with a 50k vocabulary).
        predicted = model(input_ids=inputs, use_cache=False, logits_to_keep=end - first).logits[0].float()
        total_nll += F.cross_entropy(predicted, tokens[first:end].to(device), reduction="sum").item()
    model.train(was_training)
    count = len(tokens) - 1
    result = {"loss": total_nll / count, "perplexity": math.exp(total_nll / count), "tokens": count}
    if token_bytes is not None:
        spelled = int(token_bytes[tokens[1:]].sum())
        result |= {"bits_per_byte": total_nll / math.log(2) / spelled, "bytes": spelled}
    return result
