"""Mixtures: the token fraction of each source, counted from the rows themselves, against its weight (1 and 2
processes, DataLoader workers); shards beside a stream, read window by window; exact resume; per-source validation
equal to eval.py perplexity on each source's held-out documents; refusals, one line each."""

import json
import math
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from train_runs import TINY, run_command, tiny_shards, train_in_process, trainer_state

from gpt_scratch.checkpoint import checkpoint_dirs
from gpt_scratch.data import TextSource, WorkerBatches, prepare_shards, validation_tokens
from gpt_scratch.data.mixture import MixtureBatches, mixture_entries
from gpt_scratch.data.stream import ReadOptions
from gpt_scratch.tokenizer import EOT_ID, gpt2_encoding, load_tokenizer
from gpt_scratch.train_config import parse_args

FRUIT = ["apple", "banana", "cherry", "grape", "lemon", "mango", "melon", "peach"]
SEQ_LEN, BATCH = 16, 4


def write_source(path: Path, count: int, word, seed: int) -> Path:
    """``count`` documents of 5-60 words, each from ``word(rng)``: jsonl in the schema the data module reads."""
    rng = random.Random(seed)
    docs = [" ".join(word(rng) for _ in range(rng.randint(5, 60))) for _ in range(count)]
    path.write_text("".join(json.dumps({"text": doc}) + "\n" for doc in docs))
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """Two sources whose GPT-2 tokens share none but <|endoftext|>: words, and two-digit numbers (the smaller one,
    which repeats)."""
    directory = tmp_path_factory.mktemp("mixture")
    return {
        "words": write_source(directory / "words.jsonl", 300, lambda rng: rng.choice(FRUIT), seed=1),
        "numbers": write_source(directory / "numbers.jsonl", 60, lambda rng: str(rng.randint(10, 99)), seed=2),
    }


def token_sets(paths: dict[str, Path]) -> dict[str, set[int]]:
    """Every token of each source, by tiktoken directly (the reference the rows are classified with)."""
    encoding = gpt2_encoding()
    sets = {}
    for label, path in paths.items():
        docs = [json.loads(line)["text"] for line in path.read_text().splitlines()]
        sets[label] = {t for doc in docs for t in encoding.encode_ordinary(doc)}
    assert not set.intersection(*sets.values())
    return sets


def source_of(row: torch.Tensor, sets: dict[str, set[int]]) -> str:
    """The one source every token of ``row`` (T + 1 tokens) belongs to; a row mixing sources fails."""
    tokens = set(row.tolist()) - {EOT_ID}
    owners = [label for label, tokens_of in sets.items() if tokens <= tokens_of]
    assert len(owners) == 1, f"row of {owners or 'no source'}: {sorted(tokens)[:20]}"
    return owners[0]


@pytest.mark.parametrize(
    ("weights", "world", "workers"),
    [((0.7, 0.3), 1, 0), ((0.5, 0.5), 2, 0), ((0.2, 0.8), 1, 2), ((0.9, 0.1), 2, 2)],
)
def test_each_sources_share_of_the_training_tokens_is_its_weight(sources, weights, world, workers):
    sets = token_sets(sources)
    entries = mixture_entries({str(path): weight for path, weight in zip(sources.values(), weights)})
    tokenizer = load_tokenizer("gpt2")
    counted = dict.fromkeys(sources, 0)
    for rank in range(world):
        options = ReadOptions(BATCH, SEQ_LEN, rank, world, shuffle_buffer=20, val_docs=5, tokenizer=tokenizer)
        data = MixtureBatches(entries, options)
        reader = WorkerBatches(data, workers, snapshot_every=8) if workers else data
        rank_count = dict.fromkeys(sources, 0)
        for _ in range(60):
            inputs, targets = reader.next_batch()
            for row in torch.cat([inputs, targets[:, -1:]], dim=1):
                rank_count[source_of(row, sets)] += SEQ_LEN  # each row holds T targets
        # What the pipeline says it gave (train.py's log, history and card) is what the rows show.
        assert reader.drawn.tolist() == [rank_count[label] // SEQ_LEN for label in sources]
        counted = {label: counted[label] + rank_count[label] for label in sources}
    total = sum(counted.values())
    assert total == world * 60 * BATCH * SEQ_LEN
    for label, weight in zip(sources, weights):  # the rule's promise: within one row of its weight
        assert abs(counted[label] - weight * total) <= SEQ_LEN, (counted, weights)


def test_shards_beside_a_stream_are_read_window_by_window_and_both_resume_exactly(tmp_path, sources):
    """A prepared source's k-th row is its k-th window after its held-out documents (numpy's reading of the shard
    files is the reference); the streamed source uses window_shuffle; a new object resumes the same next batches."""
    tokenizer = load_tokenizer("gpt2")
    shard_dir = tmp_path / "numbers-shards"
    paths = prepare_shards(TextSource(str(sources["numbers"])), shard_dir, shard_tokens=700, tokenizer=tokenizer)
    held_out = len(validation_tokens(TextSource(str(sources["numbers"])), 5, tokenizer))
    prepared = {"path": str(sources["numbers"]), "weight": 1.2, "token_shards": str(shard_dir)}
    entries = mixture_entries([{"path": str(sources["words"]), "weight": 1}, prepared])

    def make() -> MixtureBatches:
        options = ReadOptions(BATCH, SEQ_LEN, shuffle_buffer=20, val_docs=5, window_shuffle=12, tokenizer=tokenizer)
        return MixtureBatches(entries, options, skip_tokens=[0, held_out])

    data = make()
    stream = np.concatenate([np.load(p) for p in paths])[held_out:]
    windows = (len(stream) - 1) // SEQ_LEN
    sets, shard_rows = token_sets(sources), 0
    for _ in range(70):
        inputs, targets = data.next_batch()
        for row in torch.cat([inputs, targets[:, -1:]], dim=1):
            if source_of(row, sets) == "numbers":
                start = (shard_rows % windows) * SEQ_LEN
                assert row.tolist() == stream[start : start + SEQ_LEN + 1].tolist()
                shard_rows += 1
    assert shard_rows > windows  # the prepared source repeated: its second epoch is read the same way
    saved = data.state_dict()
    expected = [data.next_batch() for _ in range(5)]
    resumed = make()
    resumed.load_state_dict(saved)
    for (inputs, targets), (again_inputs, again_targets) in zip(expected, [resumed.next_batch() for _ in range(5)]):
        assert torch.equal(inputs, again_inputs) and torch.equal(targets, again_targets)


def test_a_mixture_runs_validates_each_source_as_eval_py_scores_it_and_reports_what_it_drew(tmp_path, sources):
    """train.py on a mixture: each source's validation loss and bits per byte equal ``eval.py perplexity`` of the
    exported model on that source's held-out documents; the log, history, trackers and card show each source and
    the tokens drawn from it."""
    run_dir = tmp_path / "run"
    data = json.dumps({str(sources["words"]): 3, str(sources["numbers"]): 1})
    args = ["--run_dir", str(run_dir), "--model", "tiny", "--seq_len", "32", "--micro_batch_size", "4",
            "--tokens_per_step", "256", "--max_steps", "8", "--eval_interval", "4", "--val_docs", "6",
            "--val_batches", "100", "--hellaswag_data", "null", "--sample_tokens", "4", "--warmup_steps", "1",
            "--shuffle_buffer", "20", "--data", data, "--report_to", "tensorboard"]  # fmt: skip
    result = train_in_process(args, {**os.environ, "GPT_SCRATCH_TRACEBACK": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    printed = result.stdout + result.stderr
    history = trainer_state(run_dir)["history"]
    drawn = dict(history["drawn"][-1][1])
    assert sum(drawn.values()) == 8 * 256 and drawn["words"] == 3 * 8 * 256 // 4
    # A source's next epoch is said when training reaches its tokens, not when the stream reads ahead into it (the
    # stream reads 256 of the 54 training documents at once); labelled by the file's stem.
    numbers = [json.loads(line)["text"] for line in sources["numbers"].read_text().splitlines()][6:]
    epoch_tokens = sum(len(ids) + 1 for ids in gpt2_encoding().encode_ordinary_batch(numbers))
    assert ("data: numbers begins epoch" in printed) == (drawn["numbers"] > epoch_tokens), (drawn, epoch_tokens)
    last = {label: {name: values[-1][1] for name, values in figures.items()}
            for label, figures in history["val_sources"].items()}  # fmt: skip
    scored_by = {}
    for label, path in sources.items():
        held_out = len(validation_tokens(TextSource(str(path)), 6, load_tokenizer("gpt2")))
        whole_windows = (held_out - 1) // 32 * 32 + 1  # validation scores whole windows of T + 1 tokens
        scored = run_command("eval.py", "perplexity", "--model", str(run_dir / "model"), "--data", str(path),
                             "--max-tokens", str(whole_windows), "--seq-len", "32", "--stride", "32",
                             "--device", "cpu")  # fmt: skip
        figures = scored_by[label] = json.loads(scored.stdout[scored.stdout.index("{") :])
        assert last[label]["val_loss"] == pytest.approx(figures["loss"], rel=1e-4), label
        assert last[label]["val_bpb"] == pytest.approx(figures["bits_per_byte"], rel=1e-4), label
    weights = {"words": 0.75, "numbers": 0.25}
    mixed = sum(weight * last[label]["val_loss"] for label, weight in weights.items())
    assert history["val_loss"][-1][1] == pytest.approx(mixed, rel=1e-6)
    # The mixed text's bits per byte: its weighted nats over its weighted bytes (each source's bytes per token from
    # eval.py's figures), not the mean of the sources' ratios.
    bytes_per_token = {label: f["loss"] / math.log(2) / f["bits_per_byte"] for label, f in scored_by.items()}
    mixed_bytes = sum(weight * bytes_per_token[label] for label, weight in weights.items())
    assert history["val_bpb"][-1][1] == pytest.approx(mixed / math.log(2) / mixed_bytes, rel=1e-4)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next(run_dir.rglob("events.out.tfevents.*")).parent))
    events.Reload()
    assert {"val/numbers/loss", "drawn/words/tokens"} <= set(events.Tags()["scalars"])
    card = (run_dir / "model" / "README.md").read_text()
    assert f"| words | 0.7500 | {drawn['words']:,} | 0.7500 |" in card, card
    # The same card from the last checkpoint through python -m gpt_scratch.export: one card builder.
    exported = tmp_path / "exported"
    run_command("-m gpt_scratch.export", str(checkpoint_dirs(run_dir)[-1]), str(exported))
    again = (exported / "README.md").read_text()
    assert f"| words | 0.7500 | {drawn['words']:,} | 0.7500 |" in again, again
    assert f"{history['val_bpb'][-1][1]:.4f}" in again and "## How it was made" in again


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{a.jsonl: 0.5, b.jsonl: -1}", "data: the weight of 'b.jsonl' (-1) must be a positive number"),
        ("{a.jsonl: 0.5, b.jsonl: lots}", "data: the weight of 'b.jsonl' ('lots') must be a positive number"),
        ("{a.jsonl: 0}", "data: the weight of 'a.jsonl' (0) must be a positive number"),
        ("[{path: a.jsonl}]", "data: entry 1 ({'path': 'a.jsonl'}) must be a mapping with path and weight"),
        ("[{path: a.jsonl, weight: 1, colum: x}]", "data: entry 1 has unknown key(s) colum; known: path, weight"),
        ("[{path: a.jsonl, weight: 1}, {path: a.jsonl, weight: 2}]", "a.jsonl appears more than once; give each"),
        ("{}", "data: the mixture is empty"),
        # YAML keeps the last of two equal keys silently (a at 33%, not 50%): refused as the list form refuses it.
        (
            "{a.jsonl: 0.5, a.jsonl: 0.5, b.jsonl: 1}",
            "--data '{a.jsonl: 0.5, a.jsonl: 0.5, b.jsonl: 1}': 'a.jsonl' is given twice in one mapping; name it once",
        ),
    ],
)
def test_a_mixture_written_wrong_is_refused_in_one_line(data, message):
    with pytest.raises(ValueError, match=None) as refused:
        parse_args(["--data", data])
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_weights_whose_sum_overflows_keep_their_proportions():
    """1.5e308 + 5e307 is inf in floats: each share used to become 0 (every row from the first source, val loss 0)."""
    entries = mixture_entries({"b.jsonl": 1.5e308, "a.jsonl": 5e307, "c.jsonl": "5e307"})
    assert [entry.weight for entry in entries] == pytest.approx([0.6, 0.2, 0.2], rel=1e-12)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_mixture_resumed_with_its_sources_in_another_order_continues_each_source(sources, workers):
    """Each source's state is kept by its label: the batches after a resume that lists the sources the other way
    round are those the uninterrupted mixture draws (they used to go to the other source: b credited with a's)."""
    tokenizer = load_tokenizer("gpt2")
    mapping = {str(sources["words"]): 0.7, str(sources["numbers"]): 0.3}

    def make(order) -> MixtureBatches | WorkerBatches:
        options = ReadOptions(BATCH, SEQ_LEN, shuffle_buffer=20, val_docs=5, tokenizer=tokenizer)
        data = MixtureBatches(mixture_entries(dict(order)), options)
        return WorkerBatches(data, workers, snapshot_every=4) if workers else data

    straight = make(mapping.items())
    for _ in range(6):
        straight.next_batch()
    saved = straight.state_dict()
    expected = [straight.next_batch() for _ in range(6)]
    reordered = make(reversed(mapping.items()))
    reordered.load_state_dict(saved)
    for (inputs, targets), (again_inputs, again_targets) in zip(expected, [reordered.next_batch() for _ in range(6)]):
        assert torch.equal(inputs, again_inputs) and torch.equal(targets, again_targets)
    assert reordered.drawn.tolist() == straight.drawn.tolist()[::-1]


def test_train_py_resumes_a_reordered_mixture_to_the_same_weights_and_refuses_another_source(tmp_path, sources):
    """docs/data.md: the order a mixture lists its sources in is not part of the run; its sources are."""
    first, second = ({"path": str(sources[name]), "weight": weight} for name, weight in (("words", 3), ("numbers", 1)))
    args = [*TINY, "--val_docs", "6", "--val_batches", "1", "--hellaswag_data", "null", "--warmup_steps", "1",
            "--min_lr", "3e-3", "--shuffle_buffer", "20", "--checkpoint_interval", "3"]  # fmt: skip
    env = {**os.environ, "GPT_SCRATCH_TRACEBACK": "", "OMP_NUM_THREADS": "1"}

    def train(run_dir, entries, steps, *more):
        return train_in_process([*args, "--run_dir", str(tmp_path / run_dir), "--data", json.dumps(entries),
                                 "--max_steps", str(steps), *more], env)  # fmt: skip

    assert train("straight", [first, second], 6).returncode == 0
    assert train("resumed", [first, second], 3).returncode == 0
    extra = {"path": str(sources["numbers"]), "weight": 1, "label": "more"}
    added = train("resumed", [first, second, extra], 6, "--resume", "auto")
    assert added.returncode == 1 and "cannot resume" in added.stderr and "data:" in added.stderr, added.stderr[-2000:]
    result = train("resumed", [second, first], 6, "--resume", "auto")
    assert result.returncode == 0, result.stderr[-3000:]
    straight = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
    assert dict(trainer_state(tmp_path / "resumed")["history"]["drawn"][-1][1]) == \
        dict(trainer_state(tmp_path / "straight")["history"]["drawn"][-1][1])  # fmt: skip


def test_an_unknown_or_empty_source_in_a_mixture_stops_the_run_before_step_1(tmp_path, corpus):
    empty = tmp_path / "empty.txt"
    empty.touch()
    env = {**os.environ, "GPT_SCRATCH_TRACEBACK": ""}
    for other, message in [(tmp_path / "nowhere.jsonl", f"no such file or directory: {tmp_path}/nowhere.jsonl"),
                           (empty, f"{empty} holds no text")]:  # fmt: skip
        run_dir = tmp_path / other.stem
        data = json.dumps({str(corpus): 0.5, str(other): 0.5})
        result = train_in_process(["--data", data, "--run_dir", str(run_dir), "--hellaswag_data", "null"], env)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert message in result.stderr.strip().splitlines()[-1], result.stderr[-2000:]
        assert not (run_dir / "checkpoints").exists() or not any((run_dir / "checkpoints").iterdir())
    # Prepared directories that are not there: said so, not looked for on the Hub under their names.
    missing = tmp_path / "noshards"
    result = train_in_process(["--token_shards", json.dumps({str(missing): 1}), "--run_dir", str(tmp_path / "s"),
                               "--hellaswag_data", "null"], env)  # fmt: skip
    assert f"error: token_shards: {missing} does not exist; prepare it with" in result.stderr, result.stderr[-2000:]


def test_shard_mixtures_name_their_sources_from_the_manifests(tmp_path, corpus):
    tiny_shards(corpus, tmp_path / "shards", shard_tokens=3000)
    config = parse_args(["--token_shards", json.dumps({str(tmp_path / "shards"): 1})])
    (entry,) = mixture_entries(config.data, config.token_shards)
    assert entry.source == TextSource(str(corpus.resolve())) and entry.token_shards == str(tmp_path / "shards")


def test_a_mixture_source_whose_shards_were_prepared_again_in_place_is_not_resumed(tmp_path, corpus):
    """Resume checked the shards' identity only for one source: a mixture's prepared source re-prepared at the same
    path (other shards, other windows) passed, and training went on from positions in shards that are not those."""
    first = str(corpus / "part[01].jsonl")
    tiny_shards(Path(first), tmp_path / "shards", shard_tokens=3000)
    data = json.dumps([{"path": first, "weight": 0.5, "token_shards": str(tmp_path / "shards")},
                       {"path": str(corpus / "part[23].jsonl"), "weight": 0.5}])  # fmt: skip
    args = [*TINY, "--data", data, "--hellaswag_data", "null", "--checkpoint_interval", "2", "--warmup_steps", "1",
            "--run_dir", str(tmp_path / "run")]  # fmt: skip
    env = {**os.environ, "GPT_SCRATCH_TRACEBACK": "", "OMP_NUM_THREADS": "1"}
    assert train_in_process([*args, "--max_steps", "2"], env).returncode == 0
    shutil.rmtree(tmp_path / "shards")
    tiny_shards(Path(first), tmp_path / "shards", shard_tokens=2000)
    result = train_in_process([*args, "--max_steps", "4", "--resume", "auto"], env)
    assert result.returncode == 1 and "cannot resume" in result.stderr, result.stderr[-2000:]
    assert "token_shards: 'part01 (identity" in result.stderr, result.stderr[-2000:]


def test_no_held_out_document_of_any_source_reaches_training(tmp_path):
    """Each source holds out its first documents (the run's val_docs, or an entry's own), and training skips exactly
    those: every document is tagged, and no held-out tag appears in any training row."""
    from data_fixtures import make_documents, write_jsonl

    tokenizer = load_tokenizer("gpt2")
    paths = {name: write_jsonl(tmp_path / f"{name}.jsonl", make_documents(40, seed=seed, prefix=name))
             for name, seed in (("alpha", 1), ("beta", 2))}  # fmt: skip
    entries = mixture_entries([{"path": str(paths["alpha"]), "weight": 0.5},
                               {"path": str(paths["beta"]), "weight": 0.5, "val_docs": 7}])  # fmt: skip
    data = MixtureBatches(entries, ReadOptions(BATCH, SEQ_LEN, shuffle_buffer=10, val_docs=3, tokenizer=tokenizer))
    text = "".join(gpt2_encoding().decode(torch.cat([inputs, targets[:, -1:]], 1).flatten().tolist())
                   for inputs, targets in (data.next_batch() for _ in range(300)))  # fmt: skip
    for name, held in (("alpha", 3), ("beta", 7)):
        docs = [json.loads(line)["text"] for line in paths[name].read_text().splitlines()]
        tags = [doc.split()[0] for doc in docs]
        assert not [tag for tag in tags[:held] if tag in text], name  # held out: never trained on
        # The rest are read (a tag cut by a row's edge in one epoch is whole in another, mostly): the check sees tags.
        assert sum(tag in text for tag in tags[held:]) >= 0.9 * (len(tags) - held), name
