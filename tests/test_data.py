"""Data pipeline: sources through `datasets` streaming, tokens equal tiktoken's, disjoint shares, exact resume."""

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import make_documents, write_fineweb_edu_shards, write_jsonl
from dist_data_worker import packed_batches
from train_runs import free_port

from gpt_scratch.data import (
    DocumentStream,
    PackedBatches,
    TextSource,
    TokenShardBatches,
    check_fits_uint16,
    open_documents,
    prepare_shards,
    validation_batches,
    validation_documents,
)
from gpt_scratch.tokenizer import EOT_ID, gpt2_encoding

TESTS = Path(__file__).parent
NUM_DOCS, NUM_SHARDS = 120, 4


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return make_documents(NUM_DOCS, seed=3)


@pytest.fixture(scope="module")
def fineweb_dir(tmp_path_factory, docs) -> Path:
    directory = tmp_path_factory.mktemp("fineweb-edu-mirror")
    write_fineweb_edu_shards(directory, docs, NUM_SHARDS)
    return directory


def reference_tokens(texts: list[str]) -> list[int]:
    """What the pipeline must produce: tiktoken applied directly, <|endoftext|> before each document."""
    encoding = gpt2_encoding()
    return [t for text in texts for t in [EOT_ID, *encoding.encode_ordinary(text)]]


def stream_tokens(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[int]:
    """The contiguous token stream that consecutive batches cut into windows (each shares one token with the next)."""
    tokens = []
    for inputs, _ in batches:
        tokens += inputs.flatten().tolist()
    return tokens + [batches[-1][1].flatten()[-1].item()]


def tags_of(tokens: list[int]) -> list[str]:
    """Document tags ("doc00042") in order of appearance in a token stream."""
    text = gpt2_encoding().decode(tokens)
    return [chunk[:8] for chunk in text.split("<|endoftext|>") if chunk.startswith("doc")]


def test_fineweb_edu_schema_parquet_streams_through_the_hub_code_path(fineweb_dir, docs):
    dataset = open_documents(TextSource(str(fineweb_dir)))  # where users name "fineweb-edu" or a Hub id
    assert dataset.n_shards == NUM_SHARDS
    assert dataset.column_names == ["text"]  # only the text column is read
    assert [row["text"] for row in dataset] == docs


def test_unshuffled_token_stream_equals_tiktoken_reference(fineweb_dir, docs):
    data = PackedBatches(TextSource(str(fineweb_dir)), batch_size=3, seq_len=40, shuffle=False, val_docs=10)
    expected = reference_tokens(docs[10:])
    span = 3 * 40
    batches = [data.next_batch() for _ in range((len(expected) - 1) // span)]
    for inputs, targets in batches:
        assert torch.equal(inputs[:, 1:], targets[:, :-1])
    got = stream_tokens(batches)
    assert got == expected[: len(got)]


def test_shuffled_stream_holds_every_training_document_once_per_epoch(fineweb_dir, docs):
    stream = DocumentStream(TextSource(str(fineweb_dir)), seed=1, shuffle_buffer=16, skip_docs=10)
    epoch0 = stream.next_documents(NUM_DOCS - 10)
    assert sorted(epoch0) == sorted(docs[10:])
    assert epoch0 != docs[10:]  # actually shuffled
    epoch1 = stream.next_documents(NUM_DOCS - 10)
    assert stream.epoch == 1 and sorted(epoch1) == sorted(docs[10:]) and epoch1 != epoch0


@pytest.mark.parametrize("suffix", ["jsonl", "txt", "glob"])
def test_local_files_directories_and_globs(tmp_path, docs, suffix):
    if suffix == "jsonl":
        write_jsonl(tmp_path / "a.jsonl", docs[:30])
        write_jsonl(tmp_path / "b.jsonl", docs[30:50])
        source = TextSource(str(tmp_path))
    else:
        for i, doc in enumerate(docs[:50]):
            (tmp_path / f"{i:03d}.txt").write_text(doc)
        source = TextSource(str(tmp_path / "*.txt") if suffix == "glob" else str(tmp_path))
    assert [row["text"] for row in open_documents(source)] == docs[:50]


def test_text_column_other_than_text(tmp_path, docs):
    write_jsonl(tmp_path / "c.jsonl", docs[:5], column="content")
    rows = list(open_documents(TextSource(str(tmp_path / "c.jsonl"), text_column="content")))
    assert [row["text"] for row in rows] == docs[:5]


def test_python_stdlib_source_needs_no_download():
    dataset = open_documents(TextSource("python-stdlib"))
    assert dataset.n_shards > 100
    first = next(iter(dataset))["text"]
    assert "import" in first or "def " in first or '"""' in first


@pytest.mark.parametrize("world", [1, 2, 3])
def test_validation_set_is_fixed_and_held_out_for_any_process_count(fineweb_dir, docs, world):
    source = TextSource(str(fineweb_dir))
    val_docs = 45  # more than the first file holds (30), so it spans files
    assert validation_documents(source, val_docs) == docs[:val_docs]
    first = validation_batches(source, val_docs, seq_len=32, batch_size=4)
    again = validation_batches(source, val_docs, seq_len=32, batch_size=4)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    flat = torch.cat([b[:, :-1] for b in first]).flatten().tolist()
    assert flat == reference_tokens(docs[:val_docs])[: len(flat)]
    training = []
    for rank in range(world):
        stream = DocumentStream(source, rank, world, seed=5, skip_docs=val_docs, epochs=1)
        training += stream.next_documents(NUM_DOCS)
    assert sorted(training) == sorted(docs[val_docs:])


def run_workers(source: str, out_dir: Path, nproc: int, *args: str) -> list[list[dict]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(TESTS / "dist_data_worker.py"), source, str(out_dir), *args]
    if nproc > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
                   free_port(), *command[1:]]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(nproc)]


def test_two_processes_see_every_document_exactly_once(tmp_path, fineweb_dir, docs):
    """Two processes of two DataLoader workers each: four consumers, split by processes and then by workers (one rule
    of consumer = rank x workers + worker out of processes x workers, which two processes without workers apply with
    two consumers)."""
    # One epoch, read to the end; windows of 8 tokens lose at most the last 8 tokens of a share, never a whole tag.
    workers = 2
    args = ["--batches", "10000", "--seq-len", "8", "--epochs", "1", "--workers", str(workers)]
    ranks = run_workers(str(fineweb_dir), tmp_path, 2, *args)
    consumers = []
    for batches in ranks:
        consumers += [[b for b in batches if b["worker"] == w] for w in range(max(workers, 1))]
    shares = [
        tags_of(stream_tokens([(torch.tensor(b["inputs"]), torch.tensor(b["targets"])) for b in c])) for c in consumers
    ]
    everything = [tag for share in shares for tag in share]
    assert sorted(everything) == sorted(doc[:8] for doc in docs)  # all, and none twice
    assert len(shares) == 2 * max(workers, 1) and all(shares)


def test_resume_in_a_new_process_yields_the_next_batches(tmp_path, fineweb_dir):
    """Each rank's share read for 9 batches here, its state saved; new processes (2 under torchrun) load them and
    read on: batches 10-14 of an uninterrupted read of that share."""
    nproc, state = 2, tmp_path / "state.pt"
    expected = []
    for rank in range(nproc):
        uninterrupted = packed_batches(str(fineweb_dir), rank, nproc)
        expected.append([uninterrupted.next_batch() for _ in range(14)][9:])
        first = packed_batches(str(fineweb_dir), rank, nproc)
        for _ in range(9):
            first.next_batch()
        torch.save(first.state_dict(), f"{state}.{rank}")
    resumed = run_workers(str(fineweb_dir), tmp_path / "resumed", nproc, "--batches", "5", "--load-state", str(state))
    for rank in range(nproc):
        assert [(b["inputs"], b["targets"]) for b in resumed[rank]] == [
            (inputs.tolist(), targets.tolist()) for inputs, targets in expected[rank]
        ]


def test_prepared_shards_hold_the_canonical_token_stream_and_resume(tmp_path, fineweb_dir, docs):
    source = TextSource(str(fineweb_dir))
    paths = prepare_shards(source, tmp_path / "shards", shard_tokens=997)
    assert len(paths) > 3
    tokens = np.concatenate([np.load(p) for p in paths]).tolist()
    assert tokens == reference_tokens(docs)
    # Interrupted after two shards: the rerun completes the same stream.
    partial = tmp_path / "partial"
    partial.mkdir()
    for p in paths[:2]:
        (partial / p.name).write_bytes(p.read_bytes())
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert manifest["complete"] and [s["file"] for s in manifest["shards"]] == [p.name for p in paths]
    head_docs = len(tags_of(np.concatenate([np.load(p) for p in paths[:2]]).tolist() + [EOT_ID]))
    # The manifest as it stood after shard 2: find the document cut by the shard boundary
    prefix = np.concatenate([np.load(p) for p in paths[:2]]).tolist()
    doc_starts = [i for i, t in enumerate(prefix) if t == EOT_ID]
    resume = {"doc": len(doc_starts) - 1, "head": len(prefix) - doc_starts[-1]}
    partial_manifest = {**manifest, "shards": manifest["shards"][:2], "complete": False, "resume": resume}
    (partial / "manifest.json").write_text(json.dumps(partial_manifest))
    assert head_docs == len(doc_starts)
    resumed = prepare_shards(source, partial, shard_tokens=997)
    assert np.concatenate([np.load(p) for p in resumed]).tolist() == tokens


@pytest.mark.parametrize("world", [1, 2, 4])
def test_shard_reader_global_batch_is_the_same_for_any_process_count(tmp_path, fineweb_dir, world):
    prepare_shards(TextSource(str(fineweb_dir)), tmp_path / "s", shard_tokens=5000)
    single = TokenShardBatches(tmp_path / "s", batch_size=4, seq_len=16)
    readers = [TokenShardBatches(tmp_path / "s", 4 // world, 16, rank=r, world_size=world) for r in range(world)]
    for _ in range(3):
        inputs, targets = single.next_batch()
        parts = [reader.next_batch() for reader in readers]
        merged = torch.stack([p[0] for p in parts], dim=1).reshape(4, 16)  # rank r holds rows r, r + N, ...
        assert torch.equal(merged, inputs)


def test_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no files match the glob"):
        open_documents(TextSource(str(tmp_path / "*.parquet")))
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        open_documents(TextSource(str(tmp_path / "corpus.txt")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no"):
        open_documents(TextSource(str(tmp_path / "empty")))


def test_missing_text_column_lists_the_columns(tmp_path, docs):
    write_jsonl(tmp_path / "d.jsonl", docs[:3], column="body")
    with pytest.raises(ValueError, match=r"text column 'text' not found .* columns are \['body', 'meta'\]"):
        open_documents(TextSource(str(tmp_path / "d.jsonl")))


def test_empty_source_is_a_clear_error(tmp_path):
    (tmp_path / "e.jsonl").write_text(json.dumps({"text": "only one"}) + "\n")
    data = PackedBatches(TextSource(str(tmp_path / "e.jsonl")), 1, 8, rank=1, world_size=2)
    with pytest.raises(ValueError, match="has no documents for consumer 1 of 2"):
        data.next_batch()


def test_unreachable_hub_says_so_and_how_to_use_local_files():
    with pytest.raises(ConnectionError, match="could not reach the Hugging Face Hub .* local .parquet"):
        open_documents(TextSource("fineweb-edu"))


def test_empty_file_is_a_clear_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="is empty: it holds no documents"):
        open_documents(TextSource(str(tmp_path / "empty.jsonl")))


def test_vocabulary_too_large_for_uint16_shards_is_a_clear_error():
    check_fits_uint16(50257)
    with pytest.raises(ValueError, match=r"vocabulary of 100277 tokens does not fit uint16 token shards"):
        check_fits_uint16(100277)


def test_the_stream_state_is_compact_and_resumes_exactly(tmp_path):
    """Buffered texts and pending tokens are saved as packed arrays, not pickled Python lists (a debug run's data
    state was 26 MB, twice the model, that way)."""
    write_jsonl(tmp_path / "corpus.jsonl", [" ".join(make_documents(8, seed=i)) for i in range(600)])  # ~3 kB each
    source = TextSource(str(tmp_path / "corpus.jsonl"))
    data = PackedBatches(source, batch_size=4, seq_len=32, shuffle_buffer=200)
    data.next_batch()
    state = data.state_dict()
    as_lists = {**state, "tokens": data._tokens.tolist(), "documents": {**state["documents"],
                "buffer": list(data._docs.buffer)}}  # fmt: skip
    as_lists["documents"].pop("buffer_lengths")
    saved, pickled_lists = io.BytesIO(), io.BytesIO()
    torch.save(state, saved)
    torch.save(as_lists, pickled_lists)
    # python-stdlib with the debug run's buffer of 1000: 9.3 MB, against 25 MB as lists.
    assert saved.tell() < pickled_lists.tell() / 2, (saved.tell(), pickled_lists.tell())
    expected = [data.next_batch()[0] for _ in range(5)]
    saved.seek(0)
    resumed = PackedBatches(source, batch_size=4, seq_len=32, shuffle_buffer=200)
    resumed.load_state_dict(torch.load(saved, weights_only=True))
    assert all(torch.equal(resumed.next_batch()[0], batch) for batch in expected)


def test_epochs_are_counted_by_the_tokens_emitted_not_by_the_documents_read_ahead(tmp_path, docs):
    """A source of 9 documents is read 256 documents at a time (about 28 epochs in one read): the epoch a stream
    reports is that of the tokens it has emitted, ceil(emitted / epoch tokens) - 1 (epoch tokens counted with
    tiktoken), also after a resume; the tokens themselves are those of the read-ahead stream."""
    write_jsonl(tmp_path / "small.jsonl", docs[:9])
    source, seq_len = TextSource(str(tmp_path / "small.jsonl")), 16
    epoch_tokens = sum(len(ids) + 1 for ids in gpt2_encoding().encode_ordinary_batch(docs[:9]))  # + <|endoftext|>
    data = PackedBatches(source, batch_size=1, seq_len=seq_len, shuffle_buffer=4)
    seen = []
    for windows in range(1, 3 * epoch_tokens // seq_len):
        seen.append(data.next_windows(1)[0])
        assert data.epoch == -(-windows * seq_len // epoch_tokens) - 1, windows
        if windows == epoch_tokens // seq_len + 3:  # in epoch 2, its start in the buffer behind: resume there
            state = data.state_dict()
            data = PackedBatches(source, batch_size=1, seq_len=seq_len, shuffle_buffer=4)
            data.load_state_dict(state)
    tokens = np.concatenate([window[:-1] for window in seen])
    assert sorted(tokens[:epoch_tokens].tolist()) == sorted(tokens[epoch_tokens : 2 * epoch_tokens].tolist())


def windows_of(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[int, ...]]:
    """Every row of the batches as its T + 1 tokens (inputs and the last target)."""
    return [tuple(x.tolist()) + (y[-1].item(),) for inputs, targets in batches for x, y in zip(inputs, targets)]


def test_window_shuffle_draws_every_window_once_and_mixes_long_documents(tmp_path):
    """With a window buffer, one epoch's rows are exactly the windows of the unshuffled packing (each token a
    target once), in another order: a long document no longer fills consecutive batches."""
    long_doc = " ".join(make_documents(40, seed=9))  # thousands of tokens: many batches of 4 x 16 on its own
    write_jsonl(tmp_path / "corpus.jsonl", [long_doc, *make_documents(60, seed=4)])
    source = TextSource(str(tmp_path / "corpus.jsonl"))

    def epoch(window_shuffle: int) -> list:
        stream = PackedBatches(source, batch_size=4, seq_len=16, seed=2, shuffle_buffer=8, epochs=1,
                               window_shuffle=window_shuffle)  # fmt: skip
        return list(stream)

    packed, shuffled = windows_of(epoch(0)), windows_of(epoch(256))
    assert sorted(shuffled) == sorted(packed) and shuffled != packed
    # In the packed order, the first batches are consecutive windows of one document; shuffled, they come from all
    # over the epoch (a window's index in the packed order says where it was).
    position = {window: i for i, window in enumerate(packed)}
    first_rows = [position[window] for window in shuffled[:16]]
    assert max(first_rows) - min(first_rows) > 64, first_rows


def test_window_shuffle_state_resumes_exactly_in_a_new_object(tmp_path):
    write_jsonl(tmp_path / "corpus.jsonl", make_documents(200, seed=5))
    source = TextSource(str(tmp_path / "corpus.jsonl"))
    data = PackedBatches(source, batch_size=4, seq_len=32, shuffle_buffer=50, window_shuffle=64)
    for _ in range(3):
        data.next_batch()
    saved = io.BytesIO()
    torch.save(data.state_dict(), saved)
    expected = [data.next_batch() for _ in range(40)]  # the buffer refills with every batch
    saved.seek(0)
    resumed = PackedBatches(source, batch_size=4, seq_len=32, shuffle_buffer=50, window_shuffle=64)
    resumed.load_state_dict(torch.load(saved, weights_only=True))
    for inputs, targets in expected:
        got_inputs, got_targets = resumed.next_batch()
        assert torch.equal(got_inputs, inputs) and torch.equal(got_targets, targets)


def test_window_shuffle_rows_do_not_depend_on_the_micro_batch_size(tmp_path):
    """Half the micro-batch, twice the accumulation: the same rows in the same order, also across a resume that
    changes the micro-batch (what a user does after running out of memory)."""
    write_jsonl(tmp_path / "corpus.jsonl", make_documents(200, seed=5))
    source = TextSource(str(tmp_path / "corpus.jsonl"))

    def stream(batch_size: int) -> PackedBatches:
        return PackedBatches(source, batch_size=batch_size, seq_len=32, shuffle_buffer=50, window_shuffle=64)

    fours = stream(4)
    rows = torch.cat([fours.next_batch()[0] for _ in range(30)])
    twos = stream(2)
    assert torch.equal(torch.cat([twos.next_batch()[0] for _ in range(60)]), rows)
    halfway = stream(4)
    for _ in range(10):
        halfway.next_batch()
    resumed = stream(2)
    resumed.load_state_dict(halfway.state_dict())
    assert torch.equal(torch.cat([resumed.next_batch()[0] for _ in range(40)]), rows[40:])


def test_a_source_changed_in_place_is_read_anew_not_from_the_opened_copy(tmp_path):
    """open_documents keeps what it opened for the process (a run opens its source three times); a file rewritten at
    the same path must still be read as it is now."""
    path = tmp_path / "corpus.jsonl"
    write_jsonl(path, ["first version"] * 3)
    assert [row["text"] for row in open_documents(TextSource(str(path)))] == ["first version"] * 3
    write_jsonl(path, ["second version, a little longer"] * 2)
    assert [row["text"] for row in open_documents(TextSource(str(path)))] == ["second version, a little longer"] * 2


def test_an_opened_source_is_read_from_another_thread_as_from_this_one(tmp_path):
    """The tokenizer trainer reads its corpus on a thread of its own (tokenizers' train_from_iterator), after the
    run opened the same source on the main thread."""
    path = tmp_path / "corpus.jsonl"
    write_jsonl(path, [f"document {i}" for i in range(5)])
    here = [row["text"] for row in open_documents(TextSource(str(path)))]
    there: list = []
    reader = threading.Thread(target=lambda: there.extend(row["text"] for row in open_documents(TextSource(str(path)))))
    reader.start()
    reader.join()
    assert there == here == [f"document {i}" for i in range(5)]
