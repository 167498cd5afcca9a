"""Token shards: memory-mapped reading (memory flat in the corpus size), and a manifest that refuses missing,
truncated, unfinished or foreign shards with the file named, before any training step."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import make_documents, write_jsonl

from gpt_scratch.atomic import write_json
from gpt_scratch.data import TextSource, TokenShardBatches, prepare_shards
from gpt_scratch.data.shards import MANIFEST, new_manifest


def write_shards(directory: Path, arrays: list[np.ndarray], source: TextSource) -> Path:
    """Shards in prepare's layout, for sizes prepare would take minutes to tokenize."""
    directory.mkdir(parents=True)
    manifest = new_manifest(source)
    for index, array in enumerate(arrays):
        path = directory / f"shard_{index:06d}.npy"
        np.save(path, array.astype(np.uint16))
        manifest["shards"].append({"file": path.name, "tokens": len(array), "bytes": path.stat().st_size})
    manifest["complete"] = True
    write_json(directory / MANIFEST, manifest)
    return directory


def anonymous_memory() -> int:
    """Resident anonymous memory of this process (bytes): what a copy of the shards would add; mapped file pages
    are not in it, they are page cache the kernel can drop."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no /proc/self/status RssAnon on this system")


def test_reading_many_shards_keeps_memory_flat(tmp_path):
    rng = np.random.default_rng(0)
    shards = write_shards(tmp_path / "s", [rng.integers(0, 50257, 10_000_000) for _ in range(10)], TextSource("x"))
    before = anonymous_memory()
    reader = TokenShardBatches(shards, batch_size=8, seq_len=1024)
    for step in range(0, reader.windows // 8, reader.windows // 8 // 40):  # batches from every shard
        reader.step = step
        reader.next_batch()
    growth = anonymous_memory() - before
    assert growth < 20 * 2**20, f"reading 200 MB of shards grew anonymous memory by {growth / 2**20:.0f} MB"


def test_windows_across_shard_boundaries_equal_the_concatenated_stream(tmp_path):
    arrays = [np.arange(start, start + length) for start, length in ((0, 37), (37, 5), (42, 100), (142, 61))]
    shards = write_shards(tmp_path / "s", arrays, TextSource("x"))
    stream = np.concatenate(arrays)
    reader = TokenShardBatches(shards, batch_size=2, seq_len=9, start_token=3)
    for step in range(reader.windows // 2):
        inputs, targets = reader.next_batch()
        for row in range(2):
            begin = 3 + (step * 2 + row) * 9
            assert inputs[row].tolist() == stream[begin : begin + 9].tolist()
            assert targets[row].tolist() == stream[begin + 1 : begin + 10].tolist()


@pytest.fixture()
def prepared(tmp_path) -> tuple[Path, TextSource]:
    write_jsonl(tmp_path / "corpus.jsonl", make_documents(120, seed=4))
    source = TextSource(str(tmp_path / "corpus.jsonl"))
    prepare_shards(source, tmp_path / "shards", shard_tokens=700)
    return tmp_path / "shards", source


def test_a_missing_middle_shard_is_refused_by_name(prepared):
    shards, source = prepared
    (shards / "shard_000002.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"shard .*shard_000002\.npy is missing"):
        TokenShardBatches(shards, 2, 16, source=source)


def test_a_truncated_shard_is_refused_by_name(prepared):
    shards, source = prepared
    path = shards / "shard_000001.npy"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"shard_000001\.npy is \d+ bytes, manifest.json says \d+: it is truncated"):
        TokenShardBatches(shards, 2, 16, source=source)


def test_an_unfinished_prepare_is_refused(prepared):
    shards, source = prepared
    manifest = json.loads((shards / MANIFEST).read_text())
    (shards / MANIFEST).write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(ValueError, match="is incomplete: `prepare` stopped after .* complete: false"):
        TokenShardBatches(shards, 2, 16, source=source)


def test_shards_without_a_manifest_or_of_another_source_are_refused(prepared, tmp_path):
    shards, source = prepared
    other = TextSource(str(tmp_path / "other.jsonl"))
    write_jsonl(tmp_path / "other.jsonl", make_documents(5, seed=9))
    with pytest.raises(ValueError, match="validation would run on other text"):
        TokenShardBatches(shards, 2, 16, source=other)
    bare = tmp_path / "bare"
    shutil.copytree(shards, bare)
    (bare / MANIFEST).unlink()
    with pytest.raises(FileNotFoundError, match="has shard files but no manifest.json"):
        TokenShardBatches(bare, 2, 16)
    # The reader without a source still reads what prepare wrote.
    first = TokenShardBatches(shards, 2, 16).next_batch()[0]
    assert first.dtype == torch.int64 and first.shape == (2, 16)


def read_all(reader: TokenShardBatches) -> None:
    for _ in range(reader.windows // reader.batch_size):
        reader.next_batch()


def test_a_shard_changed_in_place_is_refused_by_name_before_it_is_read(prepared):
    """Random valid token ids, same size: the size check passes, training would go on silently (loss 10.8)."""
    shards, source = prepared
    path = shards / "shard_000002.npy"
    original = np.load(path)
    np.save(path, np.random.default_rng(0).integers(0, 50257, len(original)).astype(np.uint16))
    reader = TokenShardBatches(shards, 2, 16, source=source)  # opening checks sizes only: step 1 is not delayed
    reader.next_batch()  # shard 0 is intact
    with pytest.raises(ValueError, match=r"shard .*shard_000002\.npy does not match its checksum in manifest\.json"):
        read_all(reader)


def test_token_ids_outside_the_vocabulary_are_refused_by_shard_name(prepared):
    """Random bytes behind a valid header, in shards written before checksums existed: an id past the vocabulary
    would fail inside the embedding (`IndexError: index out of range in self`), naming no file."""
    shards, source = prepared
    manifest = json.loads((shards / MANIFEST).read_text())
    for entry in manifest["shards"]:
        del entry["blake2b"]
    (shards / MANIFEST).write_text(json.dumps(manifest))
    path = shards / "shard_000001.npy"
    np.save(path, np.random.default_rng(1).integers(0, 2**16, len(np.load(path))).astype(np.uint16))
    with pytest.raises(ValueError, match=r"shard .*shard_000001\.npy holds token id \d+, outside the vocabulary"):
        read_all(TokenShardBatches(shards, 2, 16, source=source))
