"""Pre-tokenized shards: tokenize once (``python -m gpt_scratch.data prepare``), train many times.

A shard directory holds ``shard_NNNNNN.npy`` files (uint16 tokens of the run's tokenizer, ``<|endoftext|>`` before
each document, in the source's canonical order) and ``manifest.json``: the source, the tokenizer (name and sha256:
shards of another tokenizer are refused by name), every shard's token count, size and
BLAKE2b checksum, and whether ``prepare`` finished. The reader checks the manifest, files and sizes before training
on a single token, and each shard's checksum and token ids (all below the vocabulary size) just before its first read,
so that verifying 10B tokens (20 GB) never delays step 1. It memory-maps the shards instead of loading them:
resident memory does not grow with the corpus (10B tokens are 20 GB per process otherwise).
"""

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import replace_durably, write_json
from ..checksum import buffer_digest
from ..storage import free_bytes, gigabytes, write_failure
from ..tokenizer import TextTokenizer, load_tokenizer
from .sources import TextSource, checked_texts, open_documents

MANIFEST = "manifest.json"
FORMAT = "gpt-scratch token shards v1"


def check_fits_uint16(vocab_size: int) -> None:
    if vocab_size > 2**16:
        raise ValueError(
            f"a vocabulary of {vocab_size} tokens does not fit uint16 token shards (at most 65536); "
            "stream the source instead of pre-tokenizing it"
        )


def source_identity(source: TextSource) -> dict[str, Any]:
    """What names a source independently of the working directory (local paths are made absolute)."""
    path = source.path
    if path not in ("fineweb-edu", "python-stdlib") and os.path.exists(path):
        path = os.path.abspath(path)
    return {"path": path, "name": source.name, "split": source.split, "text_column": source.text_column}


def new_manifest(source: TextSource, tokenizer: TextTokenizer | None = None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "source": source_identity(source),
        "tokenizer": (tokenizer or load_tokenizer("gpt2")).identity(),
        "dtype": "uint16",
        "shards": [],
        "complete": False,
        "resume": {"doc": 0, "head": 0},  # the first document not fully written, and how many of its tokens were
    }


def prepare_shards(
    source: TextSource,
    out_dir: str | os.PathLike,
    shard_tokens: int = 100_000_000,
    tokenizer: TextTokenizer | None = None,
) -> list[Path]:
    """Tokenize ``source`` once, in canonical order, into uint16 ``.npy`` shards of ``shard_tokens`` tokens, with
    ``tokenizer`` (GPT-2's by default).

    Resumable: each finished shard is renamed into place and the manifest records where the stream stands, so a
    rerun continues from there. Shard 0 holds the source's first documents and can serve as a validation split, as
    in build-nanogpt.
    """
    from tqdm.auto import tqdm

    tokenizer = tokenizer or load_tokenizer("gpt2")
    encoding = tokenizer.encoding
    check_fits_uint16(encoding.n_vocab)
    out_dir = Path(out_dir)
    manifest_file = out_dir / MANIFEST
    if manifest_file.exists():
        manifest = json.loads(manifest_file.read_text())
        if manifest["source"] != source_identity(source):
            raise ValueError(
                f"{out_dir} holds shards of {manifest['source']['path']!r}, not of {source.path!r}; "
                "prepare into another directory"
            )
        if problem := tokenizer.mismatch(str(out_dir), manifest["tokenizer"]):
            raise ValueError(f"{problem}. Prepare into another directory")
    elif any(out_dir.glob("shard_*.npy")):
        raise ValueError(f"{out_dir} has shards but no {MANIFEST} (an older or foreign format); prepare into a new one")
    elif out_dir.is_dir() and (held := sorted(p.name for p in out_dir.iterdir())):  # the user's files: never mixed in
        raise ValueError(f"{out_dir} holds other files ({', '.join(held[:4])}); prepare into a new or empty directory")
    else:
        manifest = new_manifest(source, tokenizer)
    if manifest["complete"]:
        return [out_dir / shard["file"] for shard in manifest["shards"]]
    dataset = open_documents(source)  # a source that is not there fails before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    resume = manifest["resume"]
    rows = dataset.skip(resume["doc"]) if resume["doc"] else dataset
    buffer = np.empty(shard_tokens, dtype=np.uint16)
    fill, doc_index, skip_head = 0, resume["doc"], resume["head"]

    def flush(count: int, doc: int, head: int, complete: bool = False) -> None:
        name = f"shard_{len(manifest['shards']):06d}.npy"
        staging = out_dir / f".{name}.tmp.npy"
        try:
            with open(staging, "wb") as file:
                np.save(file, buffer[:count])
                file.flush()
                os.fsync(file.fileno())
        except OSError as error:  # a full disk: numpy says "N requested and M written"
            done = len(manifest["shards"])
            fix = f"Free space and rerun the same command: it continues after the {done} finished shard(s)"
            failure = write_failure(error, out_dir, 2 * count + 128, name, fix)
            staging.unlink(missing_ok=True)
            raise failure from None
        replace_durably(staging, out_dir / name)
        entry = {"file": name, "tokens": count, "bytes": (out_dir / name).stat().st_size}
        manifest["shards"].append({**entry, "blake2b": buffer_digest(buffer[:count])})
        manifest.update(complete=complete, resume={"doc": doc, "head": head})
        write_json(manifest_file, manifest)

    print(f"shards of {shard_tokens:,} tokens ({gigabytes(2 * shard_tokens)} each; FineWeb-Edu sample-10BT makes about "
          f"20 GB in all) into {out_dir}, where {gigabytes(free_bytes(out_dir))} are free")  # fmt: skip
    with tqdm(desc=f"tokenizing {source.path}", unit="tok", unit_scale=True) as bar:
        for batch in rows.iter(batch_size=256):
            for ids in encoding.encode_ordinary_batch(checked_texts(batch["text"], source)):
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
                        fill = 0
                doc_index += 1
    if fill:
        flush(fill, doc_index, 0, complete=True)
    else:
        manifest.update(complete=True, resume={"doc": doc_index, "head": 0})
        write_json(manifest_file, manifest)
    return [out_dir / shard["file"] for shard in manifest["shards"]]


def shards_identity(shard_dir: str | os.PathLike) -> str:
    """What the shards are, wherever they are: a digest of the manifest's source, tokenizer and shard list (with each
    shard's checksum). A run resumes from moved shards; not from other ones."""
    manifest = json.loads((Path(shard_dir) / MANIFEST).read_text())
    content = {key: manifest[key] for key in ("source", "tokenizer", "shards")}
    return buffer_digest(json.dumps(content, sort_keys=True).encode())


def open_shards(
    shard_dir: str | os.PathLike, source: TextSource | None = None, tokenizer: TextTokenizer | None = None
) -> list[np.ndarray]:
    """The shards of a complete, intact directory as read-only memory maps (no copy), in order.

    Refuses, naming the file and the fix: a missing manifest, an unfinished ``prepare``, shards of another source
    (when ``source`` is given) or of another tokenizer than ``tokenizer`` (GPT-2's by default), and a missing or
    truncated shard.
    """
    shard_dir = Path(shard_dir)
    prepare = f"python -m gpt_scratch.data prepare SOURCE {shard_dir}"
    manifest_file = shard_dir / MANIFEST
    if not manifest_file.is_file():
        found = "has shard files but" if any(shard_dir.glob("shard_*.npy")) else "has"
        raise FileNotFoundError(f"{shard_dir} {found} no {MANIFEST}; create the shards with `{prepare}`")
    manifest = json.loads(manifest_file.read_text())
    if not manifest.get("complete"):
        raise ValueError(
            f"{shard_dir} is incomplete: `prepare` stopped after {len(manifest['shards'])} shards "
            f"({MANIFEST} says complete: false); run `{prepare}` again to finish it"
        )
    if problem := (tokenizer or load_tokenizer("gpt2")).mismatch(str(shard_dir), manifest["tokenizer"]):
        raise ValueError(f"{problem}. Use the shards' tokenizer, or prepare shards with this one (--tokenizer)")
    if source is not None and manifest["source"] != source_identity(source):
        raise ValueError(
            f"{shard_dir} holds tokens of {manifest['source']}, but the run's data is {source_identity(source)}: "
            "validation would run on other text than training. Point --data at the shards' source, or prepare "
            "shards of this data"
        )
    shards = []
    for entry in manifest["shards"]:
        path = shard_dir / entry["file"]
        if not path.is_file():
            raise FileNotFoundError(f"shard {path} is missing ({MANIFEST} lists it); restore it or prepare again")
        if path.stat().st_size != entry["bytes"]:
            raise ValueError(
                f"shard {path} is {path.stat().st_size} bytes, {MANIFEST} says {entry['bytes']}: it is truncated "
                "or was replaced; restore it or prepare the shards again"
            )
        shards.append(np.load(path, mmap_mode="r"))
    return shards


class TokenShardBatches:
    """(inputs, targets) batches from pre-tokenized shards, in one global order shared by every process count.

    Window w covers tokens [w*T, w*T + T + 1) of the shards taken end to end. Step s uses windows
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
        source: TextSource | None = None,
        tokenizer: TextTokenizer | None = None,
    ) -> None:
        tokenizer = tokenizer or load_tokenizer("gpt2")
        self.shards = open_shards(shard_dir, source, tokenizer)
        entries = json.loads((Path(shard_dir) / MANIFEST).read_text())["shards"]
        self.paths = [Path(shard_dir) / entry["file"] for entry in entries]
        self.checksums = [entry.get("blake2b") for entry in entries]  # None: written before checksums existed
        self.vocab_size = tokenizer.vocab_size
        self._verified: set[int] = set()
        # Where each shard starts in the end-to-end token stream (no concatenation: that would copy every shard).
        self.starts = np.cumsum([0] + [len(shard) for shard in self.shards])
        self.start_token = start_token  # skips a held-out prefix (train.py's validation documents open shard 0)
        self.batch_size, self.seq_len, self.rank, self.world_size = batch_size, seq_len, rank, world_size
        total = int(self.starts[-1]) - start_token
        self.windows = (total - 1) // seq_len
        if self.windows < batch_size * world_size:
            raise ValueError(
                f"{total} tokens make {self.windows} windows of {seq_len}, fewer than one global batch "
                f"({batch_size} x {world_size} processes)"
            )
        self.step = 0

    def tokens(self, begin: int, end: int) -> np.ndarray:
        """Tokens [begin, end) of the stream (after ``start_token``), read across shard boundaries."""
        begin, end = begin + self.start_token, end + self.start_token
        shard = int(np.searchsorted(self.starts, begin, side="right")) - 1
        pieces = []
        while begin < end:
            self.verify(shard)
            local = begin - int(self.starts[shard])
            take = min(end - begin, len(self.shards[shard]) - local)
            pieces.append(self.shards[shard][local : local + take])
            begin, shard = begin + take, shard + 1
        return np.concatenate(pieces)

    def verify(self, shard: int) -> None:
        """Before a shard's first read: its content is what ``prepare`` wrote, and every id is a token of the
        vocabulary (an out-of-range id would fail deep inside the embedding, naming no file). About a second per GB."""
        if shard in self._verified:
            return
        tokens, path = self.shards[shard], self.paths[shard]
        if self.checksums[shard] is not None and buffer_digest(tokens) != self.checksums[shard]:
            raise ValueError(
                f"shard {path} does not match its checksum in {MANIFEST}: its content changed after `prepare` wrote "
                "it; restore it or prepare the shards again"
            )
        if len(tokens) and int(tokens.max()) >= self.vocab_size:
            raise ValueError(
                f"shard {path} holds token id {int(tokens.max())}, outside the vocabulary ({self.vocab_size} ids): it "
                "is damaged or of another tokenizer; prepare the shards again"
            )
        self._verified.add(shard)

    def window(self, index: int) -> np.ndarray:
        """Window ``index`` of the endless stream (epochs end to end): T + 1 tokens, one shared with the next."""
        start = (index % self.windows) * self.seq_len
        return self.tokens(start, start + self.seq_len + 1)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        global_batch = self.batch_size * self.world_size
        per_epoch = self.windows // global_batch
        first = (self.step % per_epoch) * global_batch
        rows = [
            self.tokens(w * self.seq_len, w * self.seq_len + self.seq_len + 1)
            for w in range(first + self.rank, first + global_batch, self.world_size)
        ]
        self.step += 1
        batch = torch.from_numpy(np.stack(rows).astype(np.int64))
        return batch[:, :-1].contiguous(), batch[:, 1:].contiguous()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        # In windows, not micro-batches: a resume with another micro-batch size (same tokens per step) continues.
        return {"step": self.step, "window": self.step * self.batch_size * self.world_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "window" not in state:  # written before windows were recorded, with this micro-batch size
            self.step = state["step"]
            return
        global_batch = self.batch_size * self.world_size
        if state["window"] % global_batch:
            raise ValueError(
                f"the checkpoint stopped at window {state['window']}, not a multiple of micro_batch_size x processes "
                f"({global_batch}); resume with the checkpoint's micro_batch_size"
            )
        self.step = state["window"] // global_batch
