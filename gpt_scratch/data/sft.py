"""Conversations as training batches: rendered by the chat template, the loss counted on the answers, packed.

Each example becomes tokens and a mask of the tokens the loss counts, exactly as TRL's ``SFTTrainer`` makes them
(``encode``): a conversation through ``apply_chat_template(..., return_assistant_tokens_mask=True)``, the assistant's
tokens and each turn's ``<|end|>`` counted; a prompt-completion pair as the template (or, for strings, the text)
renders the prompt and then the whole, the completion counted from where the two part; ``loss_on: all`` counts
every token.

``ConversationBatches`` packs them into windows of T + 1 tokens, back to back, as TRL's padding-free packing does: a
conversation never spills into the next window (one that would not fit opens the next window; the rest of the window
is padding the loss does not count), one longer than T + 1 tokens is cut to T + 1 and counted in ``truncated``, and
every window carries position ids that restart at each conversation, so that attention stays inside it (the model
reads restarting positions as packed sequences). A batch is (inputs, targets, positions), each (B, T): targets hold
-100 where the loss does not count, the first token of each conversation included (nothing before it predicts it).
The documents come from a ``DocumentStream`` (the conversations as JSON: ``sources.as_conversation_document``),
shuffled. Every process reads and packs the whole stream, one global order of windows, and takes its own of each
global micro-batch: a run on N processes trains on the very windows of a run on one (as token shards do), which a
chat fine-tune's small data can afford. The state resumes exactly.
"""

from typing import Any

import torch

from ..conversations import Conversation
from .mixture import MixtureEntry, label_ties, most_behind
from .sources import TextSource
from .stream import DocumentStream

IGNORE = -100  # a target the loss does not count (transformers' and PyTorch's ignore_index)


def common_prefix(a: list[int], b: list[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def encode(example: Conversation, tokenizer, loss_on: str = "answers", where: str = "a conversation"
           ) -> tuple[list[int], list[int]]:  # fmt: skip
    """(token ids, 1 where the loss counts the token) of one example, as TRL's SFTTrainer tokenizes it; a template
    that fails to render it is a ValueError naming ``where`` the example comes from."""
    from jinja2 import TemplateError

    try:
        return _encode(example, tokenizer, loss_on)
    except TemplateError as error:
        raise ValueError(f"the chat template fails to render {where}: {error}; fix the template (chat_template: "
                         "FILE) or the row") from None  # fmt: skip


def _encode(example: Conversation, tokenizer, loss_on: str) -> tuple[list[int], list[int]]:
    if example.text is not None:  # prompt-completion of strings: the text, the completion ended by <|endoftext|>
        prompt, completion = example.text
        ids = tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"]
        counted = common_prefix(tokenizer(prompt)["input_ids"], ids)
        mask = [0] * counted + [1] * (len(ids) - counted)
    elif example.prompt_messages is not None:  # prompt-completion of messages: the completion counts
        messages = list(example.messages)
        prompt = tokenizer.apply_chat_template(messages[: example.prompt_messages], add_generation_prompt=True,
                                               tokenize=True, return_dict=True)["input_ids"]  # fmt: skip
        ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        counted = common_prefix(prompt, ids)
        mask = [0] * counted + [1] * (len(ids) - counted)
    else:
        rendered = tokenizer.apply_chat_template(list(example.messages), tokenize=True, return_dict=True,
                                                 return_assistant_tokens_mask=True)  # fmt: skip
        ids, mask = rendered["input_ids"], rendered["assistant_masks"]
        if 1 not in mask and loss_on == "answers":
            raise ValueError("the chat template marks no assistant tokens ({% generation %}): nothing to learn from")
    if loss_on == "all":
        mask = [1] * len(ids)
    return list(ids), list(mask)


class Packer:
    """Examples into windows of ``seq_len + 1`` tokens, each whole in one window (see the module's docstring):
    ``add`` one at a time; it returns the window an example closes by not fitting in it, and the example opens the
    next one (``pending``)."""

    def __init__(self, seq_len: int, pad_id: int) -> None:
        self.seq_len, self.pad_id = seq_len, pad_id
        self.truncated = 0  # examples cut to seq_len + 1 tokens
        self.pending: list[tuple[list[int], list[int]]] = []  # the examples of the window being filled

    def add(self, example: tuple[list[int], list[int]]) -> tuple[torch.Tensor, ...] | None:
        """Take one example (cut to the window first); the window it closed, or None."""
        example = self.fit(example)
        closed = None
        if self.pending and sum(len(ids) for ids, _ in self.pending) + len(example[0]) > self.seq_len + 1:
            closed, self.pending = self.window(self.pending), []
        self.pending.append(example)
        return closed

    def fit(self, example: tuple[list[int], list[int]]) -> tuple[list[int], list[int]]:
        ids, mask = example
        if len(ids) > self.seq_len + 1:
            self.truncated += 1
            ids, mask = ids[: self.seq_len + 1], mask[: self.seq_len + 1]
        return ids, [0] + mask[1:]  # nothing before an example predicts its first token

    def window(self, examples: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, ...]:
        """(inputs, targets, positions) of T each, from examples that fit in T + 1 tokens together."""
        ids, mask, positions = [], [], []
        for example_ids, example_mask in examples:
            ids += example_ids
            mask += example_mask
            positions += range(len(example_ids))
        padding = self.seq_len + 1 - len(ids)
        ids += [self.pad_id] * padding
        mask += [0] * padding
        positions += range(padding)  # one more sequence: the padding attends to itself only
        tokens, counted = torch.tensor(ids), torch.tensor(mask, dtype=torch.bool)
        targets = torch.where(counted[1:], tokens[1:], IGNORE)
        return tokens[:-1], targets, torch.tensor(positions[:-1])


def packed_windows(examples: list[tuple[list[int], list[int]]], packer: Packer) -> list[tuple[torch.Tensor, ...]]:
    """Every window of a finite list of encoded examples, in order (the held-out conversations' windows)."""
    windows = [window for window in map(packer.add, examples) if window is not None]
    if packer.pending:
        windows.append(packer.window(packer.pending))
        packer.pending = []
    return windows


def batched(windows: list[tuple[torch.Tensor, ...]], batch_size: int) -> list[tuple[torch.Tensor, ...]]:
    """Windows stacked into batches of ``batch_size`` (the last may be smaller)."""
    return [tuple(torch.stack(part) for part in zip(*windows[i : i + batch_size]))
            for i in range(0, len(windows), batch_size)]  # fmt: skip


class ConversationBatches:
    """Endless (inputs, targets, positions) batches of shape (B, T) packed from a conversation source, or from a
    mixture of them (``MixtureEntry`` each: the next conversation comes from the source whose share of the tokens
    drawn lags its weight most, ties broken by label, as nanochat mixes its SFT data by example and the pretraining
    mixtures by tokens), for one process of many, resuming exactly."""

    counts_targets = True  # targets hold IGNORE: a step averages over the counted tokens of all its micro-batches

    def __init__(self, sources: TextSource | list[MixtureEntry], tokenizer, batch_size: int, seq_len: int,
                 rank: int = 0, world_size: int = 1, seed: int = 0, shuffle_buffer: int = 1000, val_docs: int = 0,
                 loss_on: str = "answers") -> None:  # fmt: skip
        if isinstance(sources, TextSource):
            sources = [MixtureEntry(sources.path, sources, 1.0)]
        self.entries, self.tokenizer, self.batch_size, self.loss_on = sources, tokenizer, batch_size, loss_on
        self.packer = Packer(seq_len, tokenizer.eos_token_id)
        self.rank, self.world_size = rank, world_size
        # Every process reads the global order (rank 0 of 1), each source skipping its held-out conversations.
        self.streams = {
            entry.label: DocumentStream(entry.source, 0, 1, seed, shuffle_buffer, skip_docs=entry.held_out(val_docs))
            for entry in sources
        }
        self.drawn = dict.fromkeys(self.streams, 0)  # tokens drawn from each source, every process's
        self._ties = label_ties(list(self.streams))

    def _next_example(self) -> tuple[list[int], list[int]]:
        labels = list(self.streams)
        label = labels[most_behind([entry.weight for entry in self.entries], [self.drawn[name] for name in labels],
                                   self._ties)]  # fmt: skip
        stream = self.streams[label]
        where = f"a conversation of {stream.source.path}"
        example = encode(Conversation.from_json(stream.next_documents(1)[0]), self.tokenizer, self.loss_on, where)
        self.drawn[label] += min(len(example[0]), self.packer.seq_len + 1)  # as packed (cut to the window)
        return example

    def next_window(self) -> tuple[torch.Tensor, ...]:
        while (window := self.packer.add(self._next_example())) is None:
            pass
        return window

    def next_batch(self) -> tuple[torch.Tensor, ...]:
        """This process's B windows of the next global micro-batch (B windows of each process, in rank order)."""
        windows = [self.next_window() for _ in range(self.batch_size * self.world_size)]
        mine = windows[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        (batch,) = batched(mine, self.batch_size)
        return batch

    @property
    def truncated(self) -> int:
        return self.packer.truncated

    def drawn_tokens(self) -> dict[str, int]:
        """The tokens drawn from each source so far (the same on every process: one global order)."""
        return dict(self.drawn)

    def state_dict(self) -> dict[str, Any]:
        streams = {label: stream.state_dict() for label, stream in self.streams.items()}
        return {"streams": streams, "drawn": dict(self.drawn), "pending": self.packer.pending,
                "truncated": self.packer.truncated}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for label, stream in self.streams.items():
            stream.load_state_dict(state["streams"][label])
        self.drawn = dict(state["drawn"])
        self.packer.pending, self.packer.truncated = state["pending"], state["truncated"]
