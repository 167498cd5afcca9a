"""Validation loss and perplexity of any causal LM on any text source, with a sliding window.

Documents are read in canonical order (no shuffling), joined with ``<|endoftext|>`` as in training, and scored in
windows of ``seq_len`` tokens that advance by ``stride``: each window predicts only the tokens the previous ones did
not, with the rest of the window as context (the sliding-window recipe of transformers' perplexity guide, without
its gap: no token at a window boundary goes unscored). ``stride == seq_len`` gives back-to-back windows; a smaller
stride gives every token more context and a lower, truer perplexity.
"""

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import DocumentStream, TextSource, tokenize_documents
from .hellaswag import model_max_length
from .tokenizer import gpt2_encoding


def source_tokens(source: TextSource, max_tokens: int) -> torch.Tensor:
    """The first ``max_tokens`` tokens of ``source`` in canonical order, ``<|endoftext|>`` before each document."""
    stream = DocumentStream(source, shuffle=False, epochs=1)
    encoding, pieces, count = gpt2_encoding(), [], 0
    with ThreadPoolExecutor(4) as pool:
        while count < max_tokens:
            docs = stream.next_documents(64)
            if not docs:
                break
            pieces.append(tokenize_documents(encoding, docs, pool))
            count += len(pieces[-1])
    if not pieces:
        raise ValueError(f"data source {source.path} has no documents")
    return torch.from_numpy(np.concatenate(pieces)[:max_tokens].astype(np.int64))


@torch.no_grad()
def evaluate_perplexity(
    model, tokens: torch.Tensor, seq_len: int | None = None, stride: int | None = None, progress: bool = False
) -> dict[str, float]:
    """``{"loss", "perplexity", "tokens"}``: mean next-token cross-entropy (nats) over ``tokens`` and its exp.

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
    return {"loss": total_nll / count, "perplexity": math.exp(total_nll / count), "tokens": count}
