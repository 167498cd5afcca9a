"""Documents -> shuffled, tokenized, packed (B, T) batches, split across processes and DataLoader workers, resumable.

How a stream is split and resumed:
- A source is a list of shards (files) in a canonical order. Each epoch shuffles that order with ``seed + epoch``.
- Consumer c of C (C = processes x DataLoader workers) reads shards c, c + C, ... when there are at least C
  shards; otherwise every consumer reads every shard and keeps every C-th document. Either way each document is read
  by exactly one consumer.
- Documents pass through a seeded shuffle buffer, are tokenized (the run's tokenizer, run by tiktoken in the
  pipeline's threads; ``<|endoftext|>`` before each), and
  packed into contiguous windows of T + 1 tokens, with no padding, as GPT-2 and nanoGPT train.
- Optionally (``window_shuffle`` > 0) the windows pass through a second seeded buffer, and each batch draws its rows
  at random from it. A document shuffle cannot mix a long document into the rest: a 150k-token file fills 75
  consecutive steps of a 2048-token batch (the stdlib has such files), and a small model trained on it forgets
  everything else. Windows keep their tokens in order, so what the model learns from each row is unchanged.
- ``state_dict()`` holds the epoch, the position in the shard list, the open shard's ``datasets`` stream state, the
  shuffle buffer with its RNG state, the tokens already tokenized but not yet emitted, and the window buffer with its
  RNG state: a new process that loads it yields exactly the batch that would have come next.
- The first ``val_docs`` documents (in canonical order) are the validation set, the same on every run and process
  count; training skips them.
"""

import collections
import copy
import dataclasses
import signal
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import IterableDataset
from datasets.distributed import split_dataset_by_node

from ..tokenizer import TextTokenizer, load_tokenizer
from .sources import TextSource, checked_texts, not_text_warning, open_documents, validation_documents

# A source's files are grouped into contiguous units, the granularity of shuffling and splitting: at least
# MAX_UNITS when there are that many files, and at least one per consumer. `IterableDataset.shard` costs time in
# proportion to the number of files, and a source of a few thousand small files (the stdlib) would otherwise spend
# more time opening shards than reading them.
MAX_UNITS = 32


def num_units(dataset: IterableDataset, consumers: int = 1) -> int:
    return min(dataset.n_shards, max(MAX_UNITS, consumers))


def unit_dataset(dataset: IterableDataset, index: int, units: int) -> IterableDataset:
    """Unit ``index`` of ``units``: a contiguous run of the source's files, in canonical order."""
    return dataset.shard(num_shards=units, index=index, contiguous=True)


def _skips_per_unit(dataset: IterableDataset, units: int, skip_docs: int) -> dict[int, int]:
    """How many of the first ``skip_docs`` canonical documents each leading unit holds (read once, at start)."""
    skips, unit = {}, 0
    while skip_docs > 0 and unit < units:
        count = sum(1 for _ in unit_dataset(dataset, unit, units).take(skip_docs))
        skips[unit], skip_docs, unit = count, skip_docs - count, unit + 1
    return skips


class DocumentStream:
    """One consumer's share of a source's documents, shuffled, over ``epochs`` epochs (endless if None), with exact
    state."""

    def __init__(
        self,
        source: TextSource,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        skip_docs: int = 0,
        read_batch: int = 64,
        shuffle: bool = True,
        epochs: int | None = None,
    ) -> None:
        self.dataset = open_documents(source)
        self.source, self.rank, self.world_size = source, rank, world_size
        self.seed, self.read_batch, self.shuffle = seed, read_batch, shuffle
        self.epochs = epochs
        self.shuffle_buffer = shuffle_buffer if shuffle else 1
        self.num_shards = num_units(self.dataset, world_size)
        self.skips = _skips_per_unit(self.dataset, self.num_shards, skip_docs)
        self.epoch, self.shard_pos, self.shard_state = 0, 0, None
        self.buffer: list[str] = []
        self.rng = np.random.default_rng([seed, rank])
        self._rows: Iterator | None = None
        self._open_shard: IterableDataset | None = None
        self._epoch_docs = 0
        self.documents_epoch = 0  # the epoch of the documents next_documents returned last

    def _my_shards(self) -> list[int]:
        order = list(range(self.num_shards))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_shards).tolist()
        if self.num_shards >= self.world_size:
            return order[self.rank :: self.world_size]
        return order  # fewer shards than consumers: read all, keep every world_size-th document (see _shard_dataset)

    def _shard_dataset(self, shard: int) -> IterableDataset:
        dataset = unit_dataset(self.dataset, shard, self.num_shards)
        if self.skips.get(shard):
            dataset = dataset.skip(self.skips[shard])  # validation documents
        if self.num_shards < self.world_size:
            dataset = split_dataset_by_node(dataset, rank=self.rank, world_size=self.world_size)
        return dataset

    def _next_rows(self) -> list[str] | None:
        """The next read_batch documents of this consumer's shards, or None at the end of the epoch."""
        shards = self._my_shards()
        while self.shard_pos < len(shards):
            if self._rows is None:
                self._open_shard = self._shard_dataset(shards[self.shard_pos])
                if self.shard_state is not None:
                    self._open_shard.load_state_dict(self.shard_state)
                self._rows = iter(self._open_shard.iter(batch_size=self.read_batch))
            batch = next(self._rows, None)
            if batch is not None:
                self.shard_state = copy.deepcopy(self._open_shard.state_dict())
                return checked_texts(batch["text"], self.source)
            self.shard_pos, self.shard_state, self._rows = self.shard_pos + 1, None, None
        return None

    def next_documents(self, count: int, one_epoch: bool = False) -> list[str]:
        """Up to ``count`` documents in shuffled order; starts the next epoch when this one runs out.

        Fewer than ``count`` (possibly none) only when ``epochs`` were asked for and they are done, or, with
        ``one_epoch``, where an epoch ends: then every document returned is of one epoch, ``documents_epoch``.
        """
        out: list[str] = []
        while len(out) < count and self.epoch != self.epochs:
            while len(self.buffer) < self.shuffle_buffer:
                rows = self._next_rows()
                if rows is None:
                    break
                self.buffer.extend(rows)
                self._epoch_docs += len(rows)
            if not self.buffer:  # this consumer's share of the epoch is used up: start the next epoch
                if self._epoch_docs == 0:
                    raise ValueError(
                        f"data source {self.source.path} has no documents for consumer {self.rank} of "
                        f"{self.world_size}; use a larger source or fewer processes/workers"
                    )
                self.epoch, self.shard_pos, self.shard_state, self._rows = self.epoch + 1, 0, None, None
                self._epoch_docs = 0
                if one_epoch and out:
                    break
                continue
            if not self.shuffle:
                taken = self.buffer[: count - len(out)]
                out.extend(taken)
                self.documents_epoch = self.epoch
                del self.buffer[: len(taken)]
                continue
            # Draw a random document from the buffer (swap with the last, pop): O(1), uniform.
            index = int(self.rng.integers(len(self.buffer)))
            self.buffer[index], self.buffer[-1] = self.buffer[-1], self.buffer[index]
            out.append(self.buffer.pop())
            self.documents_epoch = self.epoch  # the buffer holds one epoch's documents: it drains before the next
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "shard_pos": self.shard_pos,
            "shard_state": copy.deepcopy(self.shard_state),
            **pack_texts(self.buffer),
            "rng": copy.deepcopy(self.rng.bit_generator.state),
            "epoch_docs": self._epoch_docs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.shard_pos, self.shard_state = state["epoch"], state["shard_pos"], state["shard_state"]
        self.buffer = unpack_texts(state)
        self.rng.bit_generator.state = state["rng"]
        self._epoch_docs = state["epoch_docs"]
        self._rows = None


def pack_texts(texts: list[str]) -> dict[str, torch.Tensor]:
    """The shuffle buffer for a checkpoint: all texts as one zlib-compressed UTF-8 byte tensor plus their lengths.

    Two tensors instead of a pickled list of strings; source text compresses about 4x at zlib's fastest level.
    """
    encoded = [text.encode("utf-8", "surrogatepass") for text in texts]
    packed = zlib.compress(b"".join(encoded), 1)
    return {
        "buffer": torch.frombuffer(bytearray(packed), dtype=torch.uint8),
        "buffer_lengths": torch.tensor([len(e) for e in encoded], dtype=torch.int64),
    }


def unpack_texts(state: dict[str, Any]) -> list[str]:
    if isinstance(state["buffer"], list):  # a checkpoint written before the buffer was packed
        return list(state["buffer"])
    data = zlib.decompress(state["buffer"].numpy().tobytes())
    ends = np.cumsum(state["buffer_lengths"].numpy())
    starts = ends - state["buffer_lengths"].numpy()
    return [data[a:b].decode("utf-8", "surrogatepass") for a, b in zip(starts.tolist(), ends.tolist())]


def tokenize_documents(tokenizer: TextTokenizer | None, texts: list[str], pool: ThreadPoolExecutor) -> np.ndarray:
    """The tokens of ``texts`` (GPT-2's when ``tokenizer`` is None) as one uint32 array, ``<|endoftext|>`` before
    each document (``TextTokenizer.encode_documents``)."""
    return (tokenizer or load_tokenizer("gpt2")).encode_documents(texts, pool)


@dataclass(frozen=True)
class ReadOptions:
    """How one consumer reads its sources: what ``PackedBatches``, ``MixtureBatches`` and ``TokenShardBatches``
    share (the keyword arguments of each, by these names)."""

    batch_size: int
    seq_len: int
    rank: int = 0
    world_size: int = 1
    seed: int = 0
    shuffle_buffer: int = 1000
    val_docs: int = 0
    window_shuffle: int = 0
    tokenizer: TextTokenizer | None = None

    def stream(self) -> dict[str, Any]:
        """The keyword arguments of a stream (``PackedBatches``, ``MixtureBatches``)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def shards(self) -> dict[str, Any]:
        """The keyword arguments of ``TokenShardBatches``: no shuffling, no documents to hold out (it starts after
        their tokens)."""
        names = ("batch_size", "seq_len", "rank", "world_size", "tokenizer")
        return {name: getattr(self, name) for name in names}


class PackedBatches(torch.utils.data.IterableDataset):
    """Endless (inputs, targets) batches of shape (B, T) packed from a text source, for one process of many.

    Iterate it directly, or through ``WorkerBatches`` (DataLoader worker processes, each reading its own disjoint
    share); both resume exactly.
    """

    def __init__(
        self,
        source: TextSource,
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        val_docs: int = 0,
        shuffle: bool = True,
        epochs: int | None = None,
        tokenize_threads: int = 4,
        window_shuffle: int = 0,
        tokenizer: TextTokenizer | None = None,
    ) -> None:
        super().__init__()
        if batch_size <= 0 or seq_len <= 0:
            raise ValueError(f"batch_size ({batch_size}) and seq_len ({seq_len}) must be positive")
        if window_shuffle < 0:
            raise ValueError(f"window_shuffle ({window_shuffle}) must not be negative (0: off)")
        self.source, self.batch_size, self.seq_len = source, batch_size, seq_len
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.shuffle_buffer, self.val_docs, self.shuffle, self.epochs = shuffle_buffer, val_docs, shuffle, epochs
        self.tokenize_threads = tokenize_threads
        self.window_shuffle = window_shuffle if shuffle else 0
        self.tokenizer = tokenizer or load_tokenizer("gpt2")
        self._pool: ThreadPoolExecutor | None = None
        self._docs: DocumentStream | None = None
        self._tokens = np.empty(0, dtype=np.uint32)  # tokenized, not yet emitted
        # Where each epoch's tokens begin in the buffer (positions counted from the stream's first token), and the
        # epoch of the tokens emitted last: the stream reads ahead, a small source many epochs at once.
        self._tokens_start, self._epoch_starts, self._emitted_epoch = 0, collections.deque(), 0
        self._windows: list[np.ndarray] = []  # cut, waiting to be drawn (window_shuffle)
        self._window_rng: np.random.Generator | None = None
        self._pending_state: dict[str, Any] | None = None

    def _consumer(self) -> tuple[int, int]:
        worker = torch.utils.data.get_worker_info()
        if worker is None:
            return self.rank, self.world_size
        return self.rank * worker.num_workers + worker.id, self.world_size * worker.num_workers

    def share_pool(self, pool: ThreadPoolExecutor) -> None:
        """Tokenize in ``pool``: a mixture's sources share one, as many threads as one source uses, not a set each."""
        self._pool = pool

    @property
    def epoch(self) -> int:
        """The epoch (from 0) of the last tokens this consumer emitted (not of the documents it has read ahead)."""
        while self._epoch_starts and self._epoch_starts[0][0] < self._tokens_start:
            self._emitted_epoch = self._epoch_starts.popleft()[1]
        return self._emitted_epoch

    def _ensure_stream(self) -> DocumentStream:
        if self._pool is None:  # created lazily: a DataLoader worker builds its own
            self._pool = ThreadPoolExecutor(self.tokenize_threads, thread_name_prefix="tokenize")
        if self._docs is None:
            rank, world = self._consumer()
            self._docs = DocumentStream(
                self.source,
                rank,
                world,
                self.seed,
                self.shuffle_buffer,
                skip_docs=self.val_docs,
                shuffle=self.shuffle,
                epochs=self.epochs,
            )
            # Its own stream of random numbers: the document shuffle draws the same documents with or without it.
            self._window_rng = np.random.default_rng([self.seed, rank, world, 1])
            if self._pending_state is not None:
                self._docs.load_state_dict(self._pending_state["documents"])
                self._tokens = np.asarray(self._pending_state["tokens"], dtype=np.uint32)  # a tensor or a list
                # (saved before epochs were counted by what was emitted: the documents' epoch)
                self._emitted_epoch = self._pending_state.get("emitted_epoch", self._docs.epoch)
                self._epoch_starts = collections.deque(map(tuple, self._pending_state.get("epoch_starts", [])))
                if "windows" in self._pending_state:
                    self._windows = list(np.asarray(self._pending_state["windows"], dtype=np.uint32))
                    self._window_rng.bit_generator.state = self._pending_state["window_rng"]
                self._pending_state = None
        return self._docs

    def _fill(self, needed: int) -> None:
        docs = self._ensure_stream()
        if len(self._tokens) >= needed:  # no copy: a mixture reads one row at a time
            return
        chunks = [self._tokens]
        have = len(self._tokens)
        while have < needed:
            texts = docs.next_documents(256, one_epoch=True)
            if not texts:
                break  # the requested epochs are done
            known = self._epoch_starts[-1][1] if self._epoch_starts else self._emitted_epoch
            if docs.documents_epoch > known:
                self._epoch_starts.append((self._tokens_start + have, docs.documents_epoch))
            flat = self.tokenizer.encode_documents(texts, self._pool)
            chunks.append(flat)
            have += len(flat)
        self._tokens = np.concatenate(chunks)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (inputs, targets), each (B, T); targets are inputs shifted by one token.

        With ``epochs`` set, the last batch may have fewer rows, and StopIteration follows it (the final tokens that
        do not fill a window of T + 1 are dropped).
        """
        window = torch.from_numpy(self.next_windows(self.batch_size).astype(np.int64))
        return window[:, :-1].contiguous(), window[:, 1:].contiguous()

    def next_windows(self, count: int) -> np.ndarray:
        """The next ``count`` windows of T + 1 tokens as the rows of one array, each sharing its last token with the
        next one's first, or drawn from the window buffer (``window_shuffle``); a mixture takes a source's rows this
        way, as many as it draws from it at once."""
        if self.window_shuffle:
            rows = self._shuffled_windows(count)
            if not rows:
                raise StopIteration
            return np.stack(rows)
        seq_len = self.seq_len
        self._fill(count * seq_len + 1)
        rows = min(count, (len(self._tokens) - 1) // seq_len)
        if rows <= 0:
            raise StopIteration
        windows = np.lib.stride_tricks.sliding_window_view(self._tokens[: rows * seq_len + 1], seq_len + 1)
        self._tokens = self._tokens[rows * seq_len :]  # the last target is the next window's first input
        self._tokens_start += rows * seq_len
        return windows[::seq_len]

    def _shuffled_windows(self, count: int) -> list[np.ndarray]:
        """``count`` windows, each drawn at random from a buffer of at least ``window_shuffle`` (fewer only at the
        end).

        Row by row, topped up in fixed blocks: the rows come in the same order whatever B is, so a run may resume
        with another micro-batch size (the same tokens per step, other gradient accumulation) and see the same data.
        """
        seq_len, block = self.seq_len, max(1, self.window_shuffle // 8)
        self._ensure_stream()  # a resumed stream loads its window buffer here
        rows = []
        for _ in range(count):
            if len(self._windows) < self.window_shuffle:
                self._fill((self.window_shuffle - len(self._windows) + block) * seq_len + 1)
                count = min(self.window_shuffle - len(self._windows) + block, (len(self._tokens) - 1) // seq_len)
                if count > 0:  # windows of T + 1 tokens every T tokens: each token is a target exactly once
                    cut = np.lib.stride_tricks.sliding_window_view(self._tokens[: count * seq_len + 1], seq_len + 1)
                    self._windows.extend(cut[::seq_len].copy())
                    self._tokens = self._tokens[count * seq_len :]
                    self._tokens_start += count * seq_len
            if not self._windows:
                break
            pick = int(self._window_rng.integers(len(self._windows)))
            self._windows[pick], self._windows[-1] = self._windows[-1], self._windows[pick]  # O(1): swap, pop
            rows.append(self._windows.pop())
        return rows

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            try:
                batch = self.next_batch()
            except StopIteration:
                return
            yield batch

    def state_dict(self) -> dict[str, Any]:
        # In a DataLoader worker this is that worker's stream: StatefulDataLoader saves one per worker.
        if self._docs is None:
            return copy.deepcopy(self._pending_state) or {"documents": None, "tokens": []}
        # Pending tokens as one uint16 tensor (ids of a vocabulary up to 65536), not a pickled list of Python ints.
        dtype = np.uint16 if self.tokenizer.vocab_size <= 2**16 else np.int32  # torch has no uint32 to save
        state = {"documents": self._docs.state_dict(), "tokens": torch.from_numpy(self._tokens.astype(dtype)),
                 "emitted_epoch": self.epoch,  # (reading it drops the epoch starts behind the buffer)
                 "epoch_starts": [[at - self._tokens_start, epoch] for at, epoch in self._epoch_starts]}  # fmt: skip
        if self.window_shuffle:
            windows = np.stack(self._windows) if self._windows else np.empty((0, self.seq_len + 1))
            state["windows"] = torch.from_numpy(windows.astype(dtype))
            state["window_rng"] = copy.deepcopy(self._window_rng.bit_generator.state)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._docs = None
        self._tokens = np.empty(0, dtype=np.uint32)
        self._tokens_start, self._epoch_starts, self._emitted_epoch = 0, collections.deque(), 0
        self._windows = []
        self._pending_state = state if state.get("documents") is not None else None


def leave_stopping_to_the_run(worker_id: int) -> None:
    """In a DataLoader worker: ignore SIGTERM and SIGINT. A scheduler's scancel signals every process of the job, and
    a terminal's Ctrl-C the whole process group, workers included; a worker that died of it would end the training
    process's DataLoader with an error before the run could checkpoint. The run stops (and ends its workers) itself."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class WorkerBatches:
    """A stream's batches (``PackedBatches``, or a mixture's ``MixtureBatches``) read and tokenized by DataLoader
    worker processes, off the training loop, resuming exactly.

    torchdata's ``StatefulDataLoader`` snapshots every worker's copy of the stream (its ``state_dict()``) and restores
    them in new workers, so a resumed run gets exactly the batch that would have come next.
    Workers split the source further (consumer = process x workers + worker), so the order of documents depends on
    ``num_workers``: resume with the same number.
    """

    def __init__(
        self,
        dataset: torch.utils.data.IterableDataset,
        num_workers: int,
        prefetch_factor: int = 4,
        snapshot_every: int = 64,
    ) -> None:
        from torchdata.stateful_dataloader import StatefulDataLoader

        # A mixture's workers send each row's source with the batch: the rows given to training, per source.
        entries = getattr(dataset, "entries", None)
        self.labels = None if entries is None else [entry.label for entry in entries]
        self.drawn = None if entries is None else torch.zeros(len(entries), dtype=torch.int64)
        self.loader = StatefulDataLoader(
            dataset,
            batch_size=None,  # the stream yields whole (B, T) batches
            num_workers=num_workers,
            prefetch_factor=prefetch_factor,
            persistent_workers=True,
            # Workers send their state (with the shuffle buffer) every snapshot_every batches, not every batch; a
            # resume restores the last snapshot and regenerates the batches since, so it stays exact.
            snapshot_every_n_steps=snapshot_every,
            worker_init_fn=leave_stopping_to_the_run,
        )
        self._batches: Iterator | None = None

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._batches is None:
            self._batches = iter(self.loader)
        batch = next(self._batches)
        if self.drawn is None:
            return batch
        inputs, targets, sources = batch
        self.drawn += torch.bincount(sources, minlength=len(self.drawn))
        return inputs, targets

    def state_dict(self) -> dict[str, Any]:
        if self.drawn is None:
            return self.loader.state_dict()
        return {"loader": self.loader.state_dict(), "drawn": dict(zip(self.labels, self.drawn.tolist()))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.drawn is not None:  # by label (a mixture resumed in another order); a tensor in older checkpoints
            drawn = state["drawn"]
            drawn = [drawn[label] for label in self.labels] if isinstance(drawn, dict) else drawn.tolist()
            state, self.drawn = state["loader"], torch.tensor(drawn, dtype=torch.int64)
        self.loader.load_state_dict(state)
        self._batches = None


def validation_tokens(
    source: TextSource,
    num_docs: int,
    tokenizer: TextTokenizer | None = None,
    fix: str | None = None,
    say: Callable[[str], None] | None = None,
) -> torch.Tensor:
    """The validation documents' tokens, ``<|endoftext|>`` before each, as training packs them. ``fix``: what to
    change when the source has too few documents (``validation_documents``); ``say``: where to warn when they are
    not text (a binary file given as data), the sample of the source a run reads before step 1."""
    documents = validation_documents(source, num_docs, fix)
    if say and (warning := not_text_warning(source.path, documents)):
        say(warning)
    with ThreadPoolExecutor(4) as pool:
        tokens = tokenize_documents(tokenizer, documents, pool)
    return torch.from_numpy(tokens.astype(np.int64))


def token_windows(tokens: torch.Tensor, seq_len: int, batch_size: int) -> list[torch.Tensor]:
    """Consecutive (B', T + 1) windows of ``tokens`` (each sharing one token with the next), in batches."""
    if len(tokens) < seq_len + 1:
        raise ValueError(f"{len(tokens)} validation tokens are fewer than seq_len + 1 ({seq_len + 1})")
    return list(tokens.unfold(0, seq_len + 1, seq_len).split(batch_size))


def validation_batches(source: TextSource, num_docs: int, seq_len: int, batch_size: int) -> list[torch.Tensor]:
    """The validation set as (B', T + 1) token windows, identical on every run and process count."""
    return token_windows(validation_tokens(source, num_docs), seq_len, batch_size)
