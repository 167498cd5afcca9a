"""Text sources -> shuffled documents -> GPT-2 tokens -> packed (B, T) batches, split across processes, resumable.

Every source goes through ``datasets.load_dataset(..., streaming=True)``, so FineWeb-Edu on the Hub and a local
mirror of it in parquet run the very same code; only the path differs.

How a stream is split and resumed:
- A source is a list of shards (files) in a canonical order. Each epoch shuffles that order with ``seed + epoch``.
- Consumer c of C (C = processes x DataLoader workers) reads shards c, c + C, ... when there are at least C
  shards; otherwise every consumer reads every shard and keeps every C-th document. Either way each document is read
  by exactly one consumer.
- Documents pass through a seeded shuffle buffer, are tokenized with tiktoken (``<|endoftext|>`` before each), and
  packed into contiguous windows of T + 1 tokens, with no padding, as GPT-2 and nanoGPT train.
- ``state_dict()`` holds the epoch, the position in the shard list, the open shard's ``datasets`` stream state, the
  shuffle buffer with its RNG state, and the tokens already tokenized but not yet emitted: a new process that loads
  it yields exactly the batch that would have come next.
- The first ``val_docs`` documents (in canonical order) are the validation set, the same on every run and process
  count; training skips them.
"""

import argparse
import copy
import glob
import json
import os
import re
import sysconfig
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import IterableDataset, load_dataset
from datasets.distributed import split_dataset_by_node

from .tokenizer import gpt2_encoding

FINEWEB_EDU = ("HuggingFaceFW/fineweb-edu", "sample-10BT")
PYTHON_STDLIB = "python-stdlib"
_BUILDERS = {".txt": "text", ".md": "text", ".py": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


@dataclass(frozen=True)
class TextSource:
    """Where documents come from.

    ``path`` is ``"fineweb-edu"`` (``HuggingFaceFW/fineweb-edu``, config ``sample-10BT`` unless ``name`` says
    otherwise), ``"python-stdlib"`` (the running interpreter's standard library sources: real text on every machine,
    no download), a Hub dataset id (with ``name`` and ``split``), or local files: a file, a directory, or a glob of
    ``.txt``/``.md``/``.py`` (one document per file), ``.jsonl``/``.json`` or ``.parquet`` files.
    """

    path: str = "fineweb-edu"
    name: str | None = None
    split: str = "train"
    text_column: str = "text"


def _local_files(path: str) -> list[str] | None:
    """The files a local path, directory or glob names (sorted), or None when ``load_dataset(path)`` reads it as is:
    a Hub dataset id, or a directory of parquet/json files laid out like one."""
    if any(ch in path for ch in "*?["):
        files = sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f))
        if not files:
            raise FileNotFoundError(f"no files match the glob {path!r}")
        return files
    local = Path(path).expanduser()
    if local.is_file():
        return [str(local)]
    if local.is_dir():
        files = sorted(str(f) for f in local.rglob("*") if f.is_file() and f.suffix in _BUILDERS)
        if not files:
            raise FileNotFoundError(f"directory {path} has no {'/'.join(_BUILDERS)} files")
        if all(_BUILDERS[Path(f).suffix] != "text" for f in files) and not any(ch in path for ch in "*?["):
            return None  # a dataset directory (e.g. a Hub mirror): load_dataset reads it exactly as it reads the Hub
        return files
    if re.fullmatch(r"[\w-][\w.-]*(/[\w.-]+)?", path) and Path(path).suffix not in _BUILDERS:
        return None  # a Hub dataset id such as "HuggingFaceFW/fineweb-edu"
    raise FileNotFoundError(f"no such file or directory: {path}")


def _stdlib_files() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(str(f) for f in stdlib.rglob("*.py") if "site-packages" not in f.parts and f.stat().st_size > 0)


def open_documents(source: TextSource) -> IterableDataset:
    """The source as a streaming dataset with one column, ``text``."""
    path, name, data_files = source.path, source.name, None
    if path == "fineweb-edu":
        path, name = FINEWEB_EDU[0], name or FINEWEB_EDU[1]
    elif path == PYTHON_STDLIB:
        data_files = _stdlib_files()
    else:
        data_files = _local_files(path)
    kwargs: dict[str, Any] = {}
    if data_files is not None:
        builders = {_BUILDERS.get(Path(f).suffix) for f in data_files}
        if None in builders or len(builders) != 1:
            raise ValueError(
                f"local files must all be one kind ({', '.join(_BUILDERS)}); {path!r} gives "
                f"{sorted({Path(f).suffix for f in data_files})}"
            )
        path = builders.pop()
        if path == "text":
            kwargs["sample_by"] = "document"  # one document per file, so <|endoftext|> marks real boundaries
            kwargs["encoding_errors"] = "replace"  # a stray latin-1 byte (the stdlib has a few) is not fatal
    try:
        dataset = load_dataset(path, name=name, data_files=data_files, split=source.split, streaming=True, **kwargs)
    except StopIteration as error:  # how `datasets` reports local files with no rows when inferring their schema
        raise ValueError(f"data source {source.path} is empty: it holds no documents") from error
    except ConnectionError as error:
        raise ConnectionError(
            f"could not reach the Hugging Face Hub to stream {path!r} ({error}); check the network, or point the "
            "data source at local .parquet/.jsonl/.txt files (a file, directory or glob) in the same schema"
        ) from error
    columns = dataset.column_names
    if columns is None:  # schema unknown until read: look at the first row
        first = next(iter(dataset), None)
        if first is None:
            raise ValueError(f"data source {source.path} is empty: it holds no documents")
        columns = list(first)
    if source.text_column not in columns:
        raise ValueError(
            f"text column {source.text_column!r} not found in {source.path}; columns are {columns}: "
            "pass the right one as text_column"
        )
    if source.text_column != "text":
        dataset = dataset.rename_column(source.text_column, "text")
    return dataset.select_columns(["text"])


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


def validation_documents(source: TextSource, num_docs: int) -> list[str]:
    """The first ``num_docs`` documents of the source in canonical order: the fixed validation set.

    Training skips exactly these (``DocumentStream(skip_docs=num_docs)``) on every run and process count.
    """
    docs = [row["text"] for row in open_documents(source).take(num_docs)]
    if len(docs) < num_docs:
        raise ValueError(
            f"{source.path} has only {len(docs)} documents, fewer than the {num_docs} asked for validation; "
            "lower val_docs"
        )
    return docs


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
                return batch["text"]
            self.shard_pos, self.shard_state, self._rows = self.shard_pos + 1, None, None
        return None

    def next_documents(self, count: int) -> list[str]:
        """Up to ``count`` documents in shuffled order; starts the next epoch when this one runs out.

        Fewer than ``count`` (possibly none) only when ``epochs`` were asked for and they are done.
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
                continue
            if not self.shuffle:
                taken = self.buffer[: count - len(out)]
                out.extend(taken)
                del self.buffer[: len(taken)]
                continue
            # Draw a random document from the buffer (swap with the last, pop): O(1), uniform.
            index = int(self.rng.integers(len(self.buffer)))
            self.buffer[index], self.buffer[-1] = self.buffer[-1], self.buffer[index]
            out.append(self.buffer.pop())
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "shard_pos": self.shard_pos,
            "shard_state": copy.deepcopy(self.shard_state),
            "buffer": list(self.buffer),
            "rng": copy.deepcopy(self.rng.bit_generator.state),
            "epoch_docs": self._epoch_docs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.shard_pos, self.shard_state = state["epoch"], state["shard_pos"], state["shard_state"]
        self.buffer = list(state["buffer"])
        self.rng.bit_generator.state = state["rng"]
        self._epoch_docs = state["epoch_docs"]
        self._rows = None


def tokenize_documents(encoding, texts: list[str], pool: ThreadPoolExecutor) -> np.ndarray:
    """GPT-2 tokens of ``texts`` as one uint32 array, ``<|endoftext|>`` before each document.

    Text that merely looks like a special token is encoded as ordinary text (``encode_ordinary`` semantics); tiktoken
    releases the GIL, so the threads run in parallel, and its numpy output skips building Python int lists.
    """
    eot = np.array([encoding.eot_token], dtype=np.uint32)
    arrays = pool.map(lambda text: encoding.encode_to_numpy(text, allowed_special=set(), disallowed_special=()), texts)
    return np.concatenate([piece for ids in arrays for piece in (eot, ids)]) if texts else eot[:0]


class PackedBatches(torch.utils.data.IterableDataset):
    """Endless (inputs, targets) batches of shape (B, T) packed from a text source, for one process of many.

    Iterate it directly (exact ``state_dict``) or through a ``DataLoader(batch_size=None, num_workers=n)``: each
    worker then reads its own disjoint share (resume with workers is not supported; iterate without them to resume).
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
    ) -> None:
        super().__init__()
        if batch_size <= 0 or seq_len <= 0:
            raise ValueError(f"batch_size ({batch_size}) and seq_len ({seq_len}) must be positive")
        self.source, self.batch_size, self.seq_len = source, batch_size, seq_len
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.shuffle_buffer, self.val_docs, self.shuffle, self.epochs = shuffle_buffer, val_docs, shuffle, epochs
        self.tokenize_threads = tokenize_threads
        self.encoding = gpt2_encoding()
        self._pool: ThreadPoolExecutor | None = None
        self._docs: DocumentStream | None = None
        self._tokens = np.empty(0, dtype=np.uint32)  # tokenized, not yet emitted
        self._pending_state: dict[str, Any] | None = None

    def _consumer(self) -> tuple[int, int]:
        worker = torch.utils.data.get_worker_info()
        if worker is None:
            return self.rank, self.world_size
        return self.rank * worker.num_workers + worker.id, self.world_size * worker.num_workers

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
            if self._pending_state is not None:
                self._docs.load_state_dict(self._pending_state["documents"])
                self._tokens = np.asarray(self._pending_state["tokens"], dtype=np.uint32)
                self._pending_state = None
        return self._docs

    def _fill(self, needed: int) -> None:
        docs = self._ensure_stream()
        chunks = [self._tokens]
        have = len(self._tokens)
        while have < needed:
            texts = docs.next_documents(256)
            if not texts:
                break  # the requested epochs are done
            flat = tokenize_documents(self.encoding, texts, self._pool)
            chunks.append(flat)
            have += len(flat)
        self._tokens = np.concatenate(chunks)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (inputs, targets), each (B, T); targets are inputs shifted by one token.

        With ``epochs`` set, the last batch may have fewer rows, and StopIteration follows it (the final tokens that
        do not fill a window of T + 1 are dropped).
        """
        span = self.batch_size * self.seq_len
        self._fill(span + 1)
        rows = min(self.batch_size, (len(self._tokens) - 1) // self.seq_len)
        if rows <= 0:
            raise StopIteration
        span = rows * self.seq_len
        window = torch.from_numpy(self._tokens[: span + 1].astype(np.int64))
        self._tokens = self._tokens[span:]  # the last target is the next batch's first input
        return window[:-1].view(rows, self.seq_len), window[1:].view(rows, self.seq_len)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            try:
                batch = self.next_batch()
            except StopIteration:
                return
            yield batch

    def state_dict(self) -> dict[str, Any]:
        if torch.utils.data.get_worker_info() is not None:
            raise RuntimeError("state_dict() is only exact when iterating without DataLoader workers")
        if self._docs is None:
            return copy.deepcopy(self._pending_state) or {"documents": None, "tokens": []}
        return {"documents": self._docs.state_dict(), "tokens": self._tokens.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._docs = None
        self._tokens = np.empty(0, dtype=np.uint32)
        self._pending_state = state if state.get("documents") is not None else None


def validation_tokens(source: TextSource, num_docs: int) -> torch.Tensor:
    """The validation documents' tokens, ``<|endoftext|>`` before each, as training packs them."""
    with ThreadPoolExecutor(4) as pool:
        tokens = tokenize_documents(gpt2_encoding(), validation_documents(source, num_docs), pool)
    return torch.from_numpy(tokens.astype(np.int64))


def token_windows(tokens: torch.Tensor, seq_len: int, batch_size: int) -> list[torch.Tensor]:
    """Consecutive (B', T + 1) windows of ``tokens`` (each sharing one token with the next), in batches."""
    if len(tokens) < seq_len + 1:
        raise ValueError(f"{len(tokens)} validation tokens are fewer than seq_len + 1 ({seq_len + 1})")
    return list(tokens.unfold(0, seq_len + 1, seq_len).split(batch_size))


def validation_batches(source: TextSource, num_docs: int, seq_len: int, batch_size: int) -> list[torch.Tensor]:
    """The validation set as (B', T + 1) token windows, identical on every run and process count."""
    return token_windows(validation_tokens(source, num_docs), seq_len, batch_size)


# --------------------------------------------------------------------------------------------------------------------
# Pre-tokenized shards: tokenize once, train many times.


def check_fits_uint16(vocab_size: int) -> None:
    if vocab_size > 2**16:
        raise ValueError(
            f"a vocabulary of {vocab_size} tokens does not fit uint16 token shards (at most 65536); "
            "stream the source instead of pre-tokenizing it"
        )


def prepare_shards(source: TextSource, out_dir: str | os.PathLike, shard_tokens: int = 100_000_000) -> list[Path]:
    """Tokenize ``source`` once, in canonical order, into uint16 ``.npy`` shards of ``shard_tokens`` tokens.

    Resumable: each finished shard is renamed into place and ``progress.json`` records where the stream stands (the
    first document not yet fully written and how many of its tokens were), so a rerun continues from there. Shard 0
    holds the source's first documents and can serve as a validation split, as in build-nanogpt.
    """
    from tqdm.auto import tqdm

    encoding = gpt2_encoding()
    check_fits_uint16(encoding.n_vocab)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    progress_file = out_dir / "progress.json"
    progress = json.loads(progress_file.read_text()) if progress_file.exists() else {"doc": 0, "head": 0, "shards": 0}
    if progress.get("complete"):
        return sorted(out_dir.glob("shard_*.npy"))
    dataset = open_documents(source)
    rows = dataset.skip(progress["doc"]) if progress["doc"] else dataset
    buffer = np.empty(shard_tokens, dtype=np.uint16)
    fill, doc_index, shard_index, skip_head = 0, progress["doc"], progress["shards"], progress["head"]

    def flush(count: int, doc: int, head: int, complete: bool = False) -> None:
        path = out_dir / f"shard_{shard_index:06d}.npy"
        tmp = out_dir / f".shard_{shard_index:06d}.tmp.npy"
        np.save(tmp, buffer[:count])
        os.replace(tmp, path)
        progress = {"doc": doc, "head": head, "shards": shard_index + 1, "complete": complete}
        progress_file.write_text(json.dumps(progress))

    with tqdm(desc=f"tokenizing {source.path}", unit="tok", unit_scale=True) as bar:
        for batch in rows.iter(batch_size=256):
            for ids in encoding.encode_ordinary_batch(batch["text"]):
                offset, skip_head = skip_head, 0  # tokens of this document already in earlier shards (on resume)
                doc = np.asarray([encoding.eot_token, *ids], dtype=np.uint16)[offset:]
                written = 0
                while written < len(doc):
                    take = min(len(doc) - written, shard_tokens - fill)
                    buffer[fill : fill + take] = doc[written : written + take]
                    fill, written = fill + take, written + take
                    bar.update(take)
                    if fill == shard_tokens:
                        done = written == len(doc)
                        flush(fill, doc_index + done, 0 if done else offset + written)
                        shard_index, fill = shard_index + 1, 0
                doc_index += 1
    if fill:
        flush(fill, doc_index, 0, complete=True)
    else:
        progress_file.write_text(json.dumps({"doc": doc_index, "head": 0, "shards": shard_index, "complete": True}))
    return sorted(out_dir.glob("shard_*.npy"))


class TokenShardBatches:
    """(inputs, targets) batches from pre-tokenized shards, in one global order shared by every process count.

    Window w covers tokens [w*T, w*T + T + 1) of the concatenated shards. Step s uses windows
    [s*B_global, (s+1)*B_global); process r of N takes windows r, r + N, r + 2N, ... of those, so the global batch of
    a step is the same for any N: the basis for proving distributed training equals single-process training.
    """

    def __init__(
        self,
        shard_dir: str | os.PathLike,
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        start_token: int = 0,
    ) -> None:
        paths = sorted(Path(shard_dir).glob("shard_*.npy"))
        if not paths:
            raise FileNotFoundError(
                f"no shard_*.npy files in {shard_dir}; create them with `python -m gpt_scratch.data prepare`"
            )
        # start_token skips a held-out prefix (train.py's validation documents open shard 0).
        self.tokens = np.concatenate([np.load(p, mmap_mode="r") for p in paths])[start_token:]
        self.batch_size, self.seq_len, self.rank, self.world_size = batch_size, seq_len, rank, world_size
        self.windows = (len(self.tokens) - 1) // seq_len
        if self.windows < batch_size * world_size:
            raise ValueError(
                f"{len(self.tokens)} tokens make {self.windows} windows of {seq_len}, fewer than one global batch "
                f"({batch_size} x {world_size} processes)"
            )
        self.step = 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        global_batch = self.batch_size * self.world_size
        per_epoch = self.windows // global_batch
        first = (self.step % per_epoch) * global_batch
        rows = [
            self.tokens[w * self.seq_len : w * self.seq_len + self.seq_len + 1]
            for w in range(first + self.rank, first + global_batch, self.world_size)
        ]
        self.step += 1
        batch = torch.from_numpy(np.stack(rows).astype(np.int64))
        return batch[:, :-1].contiguous(), batch[:, 1:].contiguous()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gpt_scratch.data", description="Data utilities.")
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="tokenize a source into uint16 shards")
    prepare.add_argument("source", help="fineweb-edu, python-stdlib, a Hub dataset id, or local files")
    prepare.add_argument("out_dir")
    prepare.add_argument("--name", default=None, help="Hub dataset config, e.g. sample-100BT")
    prepare.add_argument("--split", default="train")
    prepare.add_argument("--text-column", default="text")
    prepare.add_argument("--shard-tokens", type=int, default=100_000_000)
    args = parser.parse_args(argv)
    source = TextSource(args.source, args.name, args.split, args.text_column)
    paths = prepare_shards(source, args.out_dir, args.shard_tokens)
    print(f"{len(paths)} shards in {args.out_dir}")


if __name__ == "__main__":
    main()
