"""A mixture of sources: every training row drawn from one source, each source's share of the training tokens set by
its weight, as OLMo, DCLM and nanochat mean a mixture (and as Megatron's blended datasets draw it).

How rows are drawn:
- The rows of all micro-batches, of all consumers (processes x DataLoader workers), are numbered in one global order:
  micro-batch j of every consumer covers global rows [j*B*C, (j+1)*B*C), and consumer c takes rows c, c + C, ...
  (as ``TokenShardBatches`` splits a global batch).
- Global row g goes to the source whose share lags its weight most: argmax over s of ``w_s * (g + 1) - n_s``, where
  ``n_s`` counts the rows given to s so far (Megatron's blending rule). It is deterministic, needs no communication
  (every consumer computes the same sequence), and keeps each source's count within one row of ``w_s * g`` at every
  point, so the realised token fractions equal the weights from the first steps on, not only on average.
- A row is T + 1 tokens of one source, read by that source's own pipeline: streamed sources through a one-row
  ``PackedBatches`` (their own shuffle, window shuffle, epochs, split across consumers), prepared token shards by
  window index (the k-th row given to a shard source is its window k, so the global batch, and with it training, is
  the same for any process count when every source is prepared). A source that runs out starts its next epoch on its
  own; consumer 0 says so.
- Every source holds out its own first ``val_docs`` documents for validation (train.py reports each).
"""

import contextlib
import dataclasses
import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..conversations import FORMATS
from ..tokenizer import TextTokenizer
from .shards import MANIFEST, TokenShardBatches
from .sources import TextSource
from .stream import PackedBatches, ReadOptions

ENTRY_KEYS = ("path", "weight", "name", "split", "text_column", "token_shards", "label", "val_docs", "format")


@dataclass(frozen=True)
class MixtureEntry:
    """One source of a mixture: what it is called in logs and curves, where its documents come from, its share of
    the training tokens (weights normalised to sum to 1), its prepared shards when it has them, and how many of its
    first documents it holds out for validation when not the run's ``val_docs`` (a source of a few files)."""

    label: str
    source: TextSource
    weight: float
    token_shards: str | None = None
    val_docs: int | None = None

    def held_out(self, run_val_docs: int) -> int:
        return run_val_docs if self.val_docs is None else self.val_docs


def label_ties(labels: list[str]) -> list[int]:
    """Each source's rank in a tie of the draw: the first label in sorted order wins, so that what is drawn does not
    depend on the order a mixture lists its sources in."""
    ordered = sorted(labels)
    return [-ordered.index(label) for label in labels]


def most_behind(weights: list[float], drawn: list[int], ties: list[int]) -> int:
    """The source to draw from next: the one whose share of what was drawn (rows, tokens) lags its weight most after
    one more draw; ties by ``label_ties``."""
    after = sum(drawn) + 1
    return max(range(len(weights)), key=lambda s: (weights[s] * after - drawn[s], ties[s]))


def is_mixture(data: Any, token_shards: Any) -> bool:
    return isinstance(data, (dict, list)) or isinstance(token_shards, dict)


def _weight(label: str, value: Any) -> float:
    if isinstance(value, str):  # YAML 1.1 reads "3e-1" (no dot) as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"data: the weight of {label!r} ({value!r}) must be a positive number, e.g. 0.3")
    return float(value)


def _entry_from_mapping(index: int, entry: Any, defaults: TextSource) -> MixtureEntry:
    if not isinstance(entry, dict) or "path" not in entry or "weight" not in entry:
        raise ValueError(
            f"data: entry {index + 1} ({entry!r}) must be a mapping with path and weight, e.g. "
            "{path: fineweb-edu, weight: 0.7, name: sample-10BT}"
        )
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise ValueError(
            f"data: entry {index + 1} has unknown key(s) {', '.join(unknown)}; known: {', '.join(ENTRY_KEYS)}"
        )
    path, label = str(entry["path"]), str(entry.get("label") or "")
    data_format = entry.get("format", defaults.format)
    if data_format is not None and data_format not in FORMATS:
        raise ValueError(f"data: the format of {label or path!r} ({data_format!r}) must be one of {', '.join(FORMATS)}")
    source = TextSource(path, entry.get("name", defaults.name), str(entry.get("split", defaults.split)),
                        str(entry.get("text_column", defaults.text_column)), data_format)  # fmt: skip
    shards, val_docs = entry.get("token_shards"), entry.get("val_docs")
    if val_docs is not None and (isinstance(val_docs, bool) or not isinstance(val_docs, int) or val_docs <= 0):
        raise ValueError(f"data: val_docs of {label!r} ({val_docs!r}) must be a positive whole number")
    shards = None if shards is None else str(shards)
    return MixtureEntry(label, source, _weight(label, entry["weight"]), shards, val_docs)


def mixture_entries(
    data: Any,
    token_shards: Any = None,
    name: str | None = None,
    split: str = "train",
    text_column: str = "text",
    data_format: str | None = None,
) -> list[MixtureEntry]:
    """The entries ``data`` (and ``token_shards``) describe, weights normalised; a ValueError naming the mistake.

    - ``data: {SOURCE: WEIGHT, ...}``: sources as ``data`` takes one, with the run's ``data_name``, ``data_split`` and
      ``text_column``;
    - ``data: [{path: SOURCE, weight: W, name:, split:, text_column:, token_shards: DIR, label:}, ...]``: per source;
    - ``token_shards: {DIR: WEIGHT, ...}``: prepared shard directories, each validated on the source its manifest
      names.
    """
    defaults = TextSource("", name, split, text_column, data_format)
    raw: list[MixtureEntry] = []
    if isinstance(token_shards, dict):
        if isinstance(data, (dict, list)):
            raise ValueError(
                "token_shards as a mapping names the whole mixture; with data as a mixture, give each entry its "
                "token_shards instead: data: [{path: SOURCE, weight: W, token_shards: DIR}, ...]"
            )
        for shard_dir, weight in token_shards.items():
            shard_dir = str(shard_dir)
            raw.append(MixtureEntry("", manifest_source(shard_dir), _weight(shard_dir, weight), shard_dir))
    elif token_shards is not None:
        raise ValueError(
            f"token_shards ({token_shards!r}) names one source's shards, but data is a mixture; give each entry its "
            "token_shards: data: [{path: SOURCE, weight: W, token_shards: DIR}, ...]"
        )
    elif isinstance(data, dict):
        for path, weight in data.items():
            source = TextSource(str(path), name, split, text_column, data_format)
            raw.append(MixtureEntry("", source, _weight(str(path), weight)))
    elif isinstance(data, list):
        raw = [_entry_from_mapping(index, entry, defaults) for index, entry in enumerate(data)]
    if not raw:
        raise ValueError("data: the mixture is empty; name at least one source with a weight")
    # The same source twice without labels of their own, or two entries given the same label: which is which?
    named = [entry.label or entry.token_shards or entry.source.path for entry in raw]
    repeated = sorted({name for name in named if named.count(name) > 1})
    if repeated:
        raise ValueError(f"data: {', '.join(repeated)} appears more than once; give each entry its own label")
    # Named by where their text comes from; a mapping of shard directories by the directories (one source may have
    # been prepared twice).
    where = [entry.token_shards if isinstance(token_shards, dict) else entry.source.path for entry in raw]
    raw = [dataclasses.replace(entry, label=label) for entry, label in zip(raw, default_labels(raw, where))]
    # Scaled by the largest first (a sum of weights near the largest float would overflow to inf and make every share
    # 0), and summed exactly (math.fsum): the shares do not depend on the order the sources are listed in.
    largest = max(entry.weight for entry in raw)
    total = math.fsum(entry.weight / largest for entry in raw)
    return [dataclasses.replace(entry, weight=entry.weight / largest / total) for entry in raw]


GLOB = re.compile(r"[*?\[\]]")
SUFFIX = re.compile(r"\.(jsonl|json|parquet|txt|md|py|csv)$")


def default_labels(entries: list[MixtureEntry], paths: list[str]) -> list[str]:
    """Each entry's label: its own, else the clean stem of where it comes from (``data/code/**/*.py`` -> ``code``,
    ``runs/words.jsonl`` -> ``words``, ``HuggingFaceFW/fineweb-edu`` -> ``fineweb-edu``), unique in the mixture
    (``part[01].jsonl`` and ``part[23].jsonl`` of one directory -> ``part01``, ``part23``): what the log, the trackers'
    keys (``val/<label>/loss``) and the card name it by."""

    def stem(path: str, keep_glob: bool) -> str:
        parts = [part for part in path.rstrip("/").split("/") if part not in ("", ".", "..")]
        plain = parts if keep_glob else [part for part in parts if not GLOB.search(part)]
        return SUFFIX.sub("", GLOB.sub("", plain[-1])) if plain else ""

    labels = [entry.label or stem(path, False) or path for entry, path in zip(entries, paths)]
    for longer in (lambda path: stem(path, True), lambda path: path):  # the path whole: no shorter name tells apart
        taken = [label for label in labels if labels.count(label) > 1]
        labels = [longer(path) or label if label in taken and not entry.label else label
                  for entry, path, label in zip(entries, paths, labels)]  # fmt: skip
    return labels


def config_mixture(config) -> list[MixtureEntry] | None:
    """The mixture a TrainConfig's ``data`` and ``token_shards`` describe, or None for one source."""
    if not is_mixture(config.data, config.token_shards):
        return None
    return mixture_entries(config.data, config.token_shards, config.data_name, config.data_split, config.text_column,
                           config.data_format)  # fmt: skip


def manifest_source(shard_dir: str) -> TextSource:
    """The source a prepared shard directory was made from (its manifest), or an error naming the directory."""
    manifest = Path(shard_dir) / MANIFEST
    if not manifest.is_file():
        if not Path(shard_dir).exists():  # checked at setup, before step 1: config validation only sees the text
            return TextSource(shard_dir)
        raise FileNotFoundError(
            f"token_shards: {shard_dir} has no {MANIFEST}; prepare it with python -m gpt_scratch.data prepare"
        )
    return TextSource(**json.loads(manifest.read_text())["source"])


def check_shard_directories(entries: list[MixtureEntry]) -> None:
    """Before any source is read: a prepared directory that is not there is named as such (its source would be
    looked for on the Hub under the directory's name otherwise)."""
    for entry in entries:
        if entry.token_shards and not Path(entry.token_shards).is_dir():
            raise FileNotFoundError(
                f"token_shards: {entry.token_shards} does not exist; prepare it with python -m gpt_scratch.data "
                f"prepare SOURCE {entry.token_shards}, or fix the path"
            )


def describe(entries: list[MixtureEntry]) -> str:
    """``python-stdlib 70%, docs/*.md 30%``: the mixture in one phrase (logs, the card, the loss curve's title)."""
    return ", ".join(f"{entry.label} {100 * entry.weight:.4g}%" for entry in entries)


class _ShardRows:
    """Windows of one prepared shard directory by index (window k mod the windows after the held-out prefix).

    Opened (and checked) when made; a DataLoader worker opens its own copy of the memory maps on first use."""

    def __init__(self, entry: MixtureEntry, seq_len: int, start_token: int, tokenizer: TextTokenizer) -> None:
        self.args = (entry.token_shards, 1, seq_len, 0, 1, start_token, entry.source, tokenizer)
        self._reader: TokenShardBatches | None = TokenShardBatches(*self.args)  # checked now: before step 1
        self.windows = self._reader.windows

    def __getstate__(self) -> dict[str, Any]:  # a DataLoader worker maps the shards itself
        return {**self.__dict__, "_reader": None}

    def window(self, index: int) -> np.ndarray:
        self._reader = self._reader or TokenShardBatches(*self.args)
        return self._reader.window(index)


class MixtureBatches(torch.utils.data.IterableDataset):
    """Endless (inputs, targets) batches of shape (B, T) drawn from several sources by weight, for one consumer of
    many; exact state for resume. Iterated (as DataLoader workers do), it also yields each row's source index, so
    that the training process counts what it was given (``WorkerBatches.drawn``); ``next_batch`` counts in
    ``drawn`` itself."""

    def __init__(
        self,
        entries: list[MixtureEntry],
        options: ReadOptions,
        skip_tokens: list[int] | None = None,
        tokenize_threads: int = 4,
    ) -> None:
        """``options``: how this consumer reads (its ``val_docs``: what each source holds out unless its entry sets
        its own); ``skip_tokens``: the tokens each prepared source's held-out documents take."""
        super().__init__()
        self.entries, self.batch_size, self.seq_len = entries, options.batch_size, options.seq_len
        self.rank, self.world_size = options.rank, options.world_size
        self.weights = [entry.weight for entry in entries]
        self._tie = label_ties([entry.label for entry in entries])
        skip_tokens = skip_tokens or [0] * len(entries)
        self.readers: list[PackedBatches | _ShardRows] = [
            _ShardRows(entry, options.seq_len, skip, options.tokenizer) if entry.token_shards else
            PackedBatches(entry.source, **dataclasses.replace(options, batch_size=1, val_docs=entry.held_out(
                options.val_docs)).stream(), tokenize_threads=tokenize_threads)
            for entry, skip in zip(entries, skip_tokens)
        ]  # fmt: skip
        self.row = 0  # global rows drawn so far, of every consumer
        self.counts = [0] * len(entries)  # of those, each source's
        self.drawn = torch.zeros(len(entries), dtype=torch.int64)  # rows this consumer returned from next_batch
        self._epochs = [0] * len(entries)  # the epoch each stream was in when it last gave a row (for the log)
        self.tokenize_threads = tokenize_threads
        self._pool: ThreadPoolExecutor | None = None  # made where the rows are read (a DataLoader worker: its own)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pool": None}

    def _consumer(self) -> tuple[int, int]:
        worker = torch.utils.data.get_worker_info()
        if worker is None:
            return self.rank, self.world_size
        return self.rank * worker.num_workers + worker.id, self.world_size * worker.num_workers

    def _pick(self) -> int:
        """The source of the next global row (``most_behind``)."""
        return most_behind(self.weights, self.counts, self._tie)

    def _read(self, source: int, indices: list[int], announce: bool) -> np.ndarray:
        """The rows this consumer draws from ``source`` in one micro-batch (its windows ``indices`` of a prepared
        source; the next ones of a stream), in one read."""
        reader = self.readers[source]
        if isinstance(reader, _ShardRows):
            return np.stack([reader.window(index) for index in indices])
        rows = reader.next_windows(len(indices))
        epoch, before = reader.epoch, self._epochs[source]
        if announce and epoch > before:
            # A source of fewer documents than one read of the pipeline (256) goes through several epochs at once.
            epochs = f"epoch {epoch + 1}" if epoch == before + 1 else f"epochs {before + 2}-{epoch + 1}"
            print(f"data: {self.entries[source].label} begins {epochs}", flush=True)
        self._epochs[source] = epoch
        return rows

    def next_rows(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This consumer's next B rows: inputs, targets (B, T), and each row's source index (B,)."""
        consumer, consumers = self._consumer()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.tokenize_threads, thread_name_prefix="tokenize")
            for reader in self.readers:
                if isinstance(reader, PackedBatches):
                    reader.share_pool(self._pool)
        mine: dict[int, list[int]] = {}  # source -> the window index of each of its rows in this micro-batch
        order = []  # each of this consumer's rows' source, in the global order
        for global_row in range(self.row, self.row + self.batch_size * consumers):
            source = self._pick()
            index, self.counts[source], self.row = self.counts[source], self.counts[source] + 1, global_row + 1
            shards = self.readers[source]
            if consumer == 0 and isinstance(shards, _ShardRows) and index and index % shards.windows == 0:
                print(f"data: {self.entries[source].label} begins epoch {index // shards.windows + 1}", flush=True)
            if global_row % consumers == consumer:
                mine.setdefault(source, []).append(index)
                order.append(source)
        sources = np.array(order)
        window = np.empty((len(order), self.seq_len + 1), dtype=np.int64)
        for source, indices in mine.items():
            window[sources == source] = self._read(source, indices, announce=consumer == 0)
        window = torch.from_numpy(window)
        return window[:, :-1].contiguous(), window[:, 1:].contiguous(), torch.from_numpy(sources)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets, sources = self.next_rows()
        self.drawn += torch.bincount(sources, minlength=len(self.entries))
        return inputs, targets

    def __iter__(self):
        while True:
            yield self.next_rows()

    def state_dict(self) -> dict[str, Any]:
        """Each source's state by its label: a resume that lists the sources in another order continues each one."""
        labels = [entry.label for entry in self.entries]
        return {
            "row": self.row,
            "counts": dict(zip(labels, self.counts)),
            "drawn": dict(zip(labels, self.drawn.tolist())),
            "epochs": dict(zip(labels, self._epochs)),
            "streams": {
                label: None if isinstance(r, _ShardRows) else r.state_dict() for label, r in zip(labels, self.readers)
            },  # fmt: skip
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        labels = [entry.label for entry in self.entries]
        if isinstance(state["counts"], list):  # saved before states were keyed by label: in the order listed then
            state = {key: dict(zip(labels, value)) if isinstance(value, list) else value for key, value in
                     {**state, "drawn": state["drawn"].tolist()}.items()}  # fmt: skip
        if set(state["counts"]) != set(labels):
            raise ValueError(
                f"the checkpoint's mixture has the sources {', '.join(state['counts'])}; this run's "
                f"{', '.join(labels)}. A mixture's sources are part of what a run is: resume with the checkpoint's"
            )
        self.row = state["row"]
        self.counts = [state["counts"][label] for label in labels]
        self._epochs = [state["epochs"][label] for label in labels]
        self.drawn = torch.tensor([state["drawn"][label] for label in labels], dtype=torch.int64)
        for label, reader in zip(labels, self.readers):
            if state["streams"][label] is not None:
                reader.load_state_dict(state["streams"][label])
