"""Log-likelihoods of continuations given contexts, for any causal LM, as lm-evaluation-harness's HF backend computes
them (``loglikelihood``), faster: the scorer of HellaSwag and of every benchmark task.

Two ways, the same numbers: a context that several continuations share (a multiple-choice item's choices) is run
once, its keys and values then serve each continuation; the rest (a single continuation, an input past the model's
length, a model without a cache) run as whole sequences. Either way rows are length-sorted into batches and only
continuation positions reach the LM head.
"""

import inspect

import torch
from tqdm.auto import tqdm


def encode_pairs(tokenizer, pairs: list[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """lm-eval's split of (context, continuation) pairs into tokens, batched: trailing whitespace of the context moves
    onto the continuation; context + continuation are tokenized together, and the continuation is the tokens past the
    context's own tokenization."""
    contexts, wholes = [], []
    for context, continuation in pairs:
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        contexts.append(context)
        wholes.append(context + continuation)
    unique_contexts = list(dict.fromkeys(contexts))  # the four endings of an example share their context
    context_ids = dict(zip(unique_contexts, tokenizer(unique_contexts, add_special_tokens=False)["input_ids"]))
    whole_ids = tokenizer(wholes, add_special_tokens=False)["input_ids"]
    return [(context_ids[c], w[len(context_ids[c]) :]) for c, w in zip(contexts, whole_ids)]


def model_max_length(model) -> int:
    """The longest input the model takes, read from its config as lm-eval reads it (else 2048)."""
    config = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        if getattr(config, name, None):
            return int(getattr(config, name))
    return 2048


@torch.no_grad()
def _logliks_in_full(
    model,
    requests: list[tuple[list[int], list[int]]],
    batch_size: int,
    progress: bool = False,
    greedy: bool = False,
) -> list[tuple[float, int, bool | None]]:
    """Scores of whole sequences (context + continuation, cut on the left to the model's length as lm-eval cuts
    them), length-sorted into batches."""
    max_length = model_max_length(model)
    device = next(model.parameters()).device
    sequences = []
    for context_ids, continuation_ids in requests:
        tokens = (context_ids + continuation_ids)[-(max_length + 1) :][:-1]  # the harness's left truncation
        sequences.append((tokens, continuation_ids))
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i][0]))
    results: list[tuple[float, int, bool | None]] = [(0.0, 0, None)] * len(sequences)
    # Only continuation positions need logits, and with a 50k vocabulary the LM head over every position would cost
    # more than the rest of the model. So rows are padded on the left (with a mask and positions counted from each
    # row's first real token, which changes no real token's logits), every continuation ends at the last position,
    # and models that take `logits_to_keep` (transformers' own and ours) compute only the last few positions.
    parameters = inspect.signature(model.forward).parameters
    keeps_logits, takes_positions = "logits_to_keep" in parameters, "position_ids" in parameters
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc="scoring", disable=not progress, leave=False):
        chunk = order[start : start + batch_size]
        width = len(sequences[chunk[0]][0])
        inputs = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, index in enumerate(chunk):
            tokens = sequences[index][0]
            inputs[row, width - len(tokens) :] = torch.tensor(tokens)
            mask[row, width - len(tokens) :] = 1
        kwargs = {"attention_mask": mask.to(device), "use_cache": False}
        if takes_positions:
            kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(device)
        keep = max(len(sequences[i][1]) for i in chunk) if keeps_logits else width
        if keeps_logits:
            kwargs["logits_to_keep"] = keep
        logits = model(input_ids=inputs.to(device), **kwargs).logits[:, -keep:]  # (B, keep, vocab)
        # Row by row: one row's continuation logits stay in cache through log-softmax and gather (the whole batch's
        # at once measured 1.5x slower on HellaSwag's 10-30-token endings).
        sums, misses = [], []
        for row, index in enumerate(chunk):
            continuation = sequences[index][1]
            span = logits[row, keep - len(continuation) :].float()  # (len(cont), vocab)
            targets = torch.tensor(continuation, device=span.device)
            sums.append(span.log_softmax(-1).gather(1, targets.unsqueeze(1)).sum())
            if greedy:  # lm-eval's is_greedy: the argmax is the target at every position
                misses.append((span.argmax(-1) != targets).sum())
        # One device-to-host copy per batch: on a GPU, a copy per row would wait on the device B times.
        sums = torch.stack(sums).tolist()
        is_greedy = [miss == 0 for miss in torch.stack(misses).tolist()] if greedy else [None] * len(chunk)
        for index, total, row_greedy in zip(chunk, sums, is_greedy):
            results[index] = (total, len(sequences[index][1]), row_greedy)
    return results


@torch.no_grad()
def continuation_logliks(
    model,
    requests: list[tuple[list[int], list[int]]],
    batch_size: int,
    progress: bool = False,
    greedy: bool = False,
) -> list[tuple[float, int, bool | None]]:
    """(summed log-likelihood, token count, whether greedy decoding gives it) of each continuation given its
    context. The greedy check (an argmax over the vocabulary at every continuation position, lm-eval's
    ``is_greedy``) runs only when asked: None otherwise."""
    for _, continuation in requests:
        if not continuation:
            raise ValueError("a continuation tokenized to zero tokens: every choice and target must be non-empty")
    max_length = model_max_length(model)
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, (context, continuation) in enumerate(requests):
        if context and len(context) + len(continuation) <= max_length + 1:  # no left truncation
            groups.setdefault(tuple(context), []).append(index)
    shared = [members for members in groups.values() if len(members) > 1] if _cache_keyword(model) else []
    in_shared = {index for members in shared for index in members}
    alone = [index for index in range(len(requests)) if index not in in_shared]
    results: list = [None] * len(requests)
    was_training = model.training
    model.eval()
    try:
        for index, score in zip(alone, _logliks_in_full(model, [requests[i] for i in alone], batch_size, progress,
                                                          greedy)):  # fmt: skip
            results[index] = score
        for index, score in _logliks_sharing_contexts(model, requests, shared, batch_size, progress, greedy):
            results[index] = score
    finally:
        model.train(was_training)
    return results


def _cache_keyword(model) -> str | None:
    """The name the model's forward takes a cache by (``cache`` in newer transformers and ours, ``past_key_values``
    before), if it takes positions and ``logits_to_keep`` too; None: it cannot share contexts."""
    parameters = inspect.signature(model.forward).parameters
    if not {"position_ids", "logits_to_keep"} <= parameters.keys():
        return None
    return next((name for name in ("cache", "past_key_values") if name in parameters), None)


def _logliks_sharing_contexts(model, requests, groups: list[list[int]], batch_size: int, progress: bool, greedy: bool):
    """(index, score) of each request in ``groups`` (request indices sharing one context): the contexts run once, in
    left-padded batches with a cache; then every continuation but its last token runs on its context's keys and
    values. A continuation's first token is scored from its context's last position."""
    device = next(model.parameters()).device
    groups = sorted(groups, key=lambda members: -len(requests[members[0]][0]))
    batches, batch, rows = [], [], 0
    for members in groups:  # as many groups as keep the continuation pass within batch_size rows
        if batch and rows + len(members) > batch_size:
            batches.append(batch)
            batch, rows = [], 0
        batch.append(members)
        rows += len(members)
    batches += [batch] if batch else []
    for batch in tqdm(batches, desc="scoring (shared contexts)", disable=not progress, leave=False):
        contexts = [requests[members[0]][0] for members in batch]
        width = max(map(len, contexts))
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        inputs = torch.zeros((len(batch), width), dtype=torch.long)
        for row, context in enumerate(contexts):
            inputs[row, width - len(context) :] = torch.tensor(context)
            mask[row, width - len(context) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=inputs.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                    use_cache=True, logits_to_keep=1)  # fmt: skip
        first = out.logits[:, -1].float()  # (groups, vocab): each context's prediction of the next token
        member_group = [row for row, members in enumerate(batch) for _ in members]
        member_index = [index for members in batch for index in members]
        continuations = [requests[index][1] for index in member_index]
        rest = max(len(c) for c in continuations) - 1  # the continuation tokens that are inputs too
        later = None
        if rest:
            # transformers >= 5.24 names it cache (reading its old name there prints a deprecation warning)
            cache = getattr(out, "cache", None)
            cache = cache if cache is not None else getattr(out, "past_key_values", None)
            selector = torch.tensor(member_group, device=device)
            cache.reorder_cache(selector)  # each member's own copy of its context's keys and values
            new_inputs = torch.zeros((len(member_index), rest), dtype=torch.long)
            new_mask = torch.zeros((len(member_index), rest), dtype=torch.long)
            for row, continuation in enumerate(continuations):  # right-padded: padding comes after every real token
                new_inputs[row, : len(continuation) - 1] = torch.tensor(continuation[:-1])
                new_mask[row, : len(continuation) - 1] = 1
            full_mask = torch.cat([mask[member_group], new_mask], dim=-1)
            new_positions = mask.sum(-1)[member_group].unsqueeze(1) + torch.arange(rest)
            new_positions = new_positions * new_mask  # padding at 0: a shorter member's would run past the model
            later = model(
                input_ids=new_inputs.to(device), attention_mask=full_mask.to(device),
                position_ids=new_positions.to(device), use_cache=True, **{_cache_keyword(model): cache},
            ).logits  # fmt: skip
        first_logprobs = first.log_softmax(-1)  # (groups, vocab)
        sums, misses = [], []
        for row, (group, continuation) in enumerate(zip(member_group, continuations)):
            total = first_logprobs[group, continuation[0]]
            miss = first[group].argmax() != continuation[0] if greedy else None
            if len(continuation) > 1:
                span = later[row, : len(continuation) - 1].float()  # predicts continuation[1:]
                targets = torch.tensor(continuation[1:], device=span.device)
                total = total + span.log_softmax(-1).gather(1, targets.unsqueeze(1)).sum()
                if greedy:
                    miss = miss | (span.argmax(-1) != targets).any()
            sums.append(total)
            misses.append(miss)
        sums = torch.stack(sums).tolist()  # one device-to-host copy per batch
        flags = [not miss for miss in torch.stack(misses).tolist()] if greedy else [None] * len(sums)
        for index, total, continuation, flag in zip(member_index, sums, continuations, flags):
            yield index, (total, len(continuation), flag)
