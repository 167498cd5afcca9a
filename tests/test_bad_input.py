"""Bad input, as users make it: one clear line naming the problem and the fix, no traceback, nothing lost."""

import json
import os
from pathlib import Path

import pytest
from data_fixtures import make_documents, write_jsonl
from train_runs import ROOT, run_command, run_train, train_in_process

from gpt_scratch.data import PackedBatches, TextSource, prepare_shards, validation_documents
from gpt_scratch.hellaswag import load_rows
from gpt_scratch.train_config import parse_args

ROW = {"activity_label": "Cooking", "ctx_a": "She cracks an egg.", "ctx_b": "she", "endings": ["a", "b", "c", "d"],
       "label": 0}  # fmt: skip


def test_a_document_without_text_is_named_with_the_source_and_column(tmp_path):
    rows = [{"text": t} for t in make_documents(30, seed=1)]
    rows[17] = {"text": None}
    rows.insert(25, {"title": "no text at all"})
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    source = TextSource(str(path))
    expected = f"a document of {path} has no text: its 'text' is None"
    with pytest.raises(ValueError, match=expected):
        PackedBatches(source, batch_size=4, seq_len=16, shuffle_buffer=5).next_batch()
    with pytest.raises(ValueError, match=expected):
        validation_documents(source, 20)
    with pytest.raises(ValueError, match=expected):
        prepare_shards(source, tmp_path / "shards", shard_tokens=500)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"endings": ["a", "", "c", "d"]}, "ending 1 is empty"),
        ({"endings": ["a", "[title]", "c", "d"]}, "ending 1 is empty"),
        ({"label": 2.7}, "field 'label' must be an integer 0-3, got 2.7"),
        ({"label": True}, "field 'label' must be an integer 0-3, got True"),
    ],
)
def test_bad_hellaswag_rows_are_refused_by_line(tmp_path, change, message):
    path = tmp_path / "hs.jsonl"
    path.write_text(json.dumps(ROW) + "\n" + json.dumps({**ROW, **change}) + "\n")
    with pytest.raises(ValueError, match=f"{path}:2: {message}"):
        load_rows(str(path))
    assert load_rows([{**ROW, "label": "3"}])[0]["label"] == "3"  # the Hub's string labels stay valid


def test_malformed_yaml_names_the_file(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("lr: 3e-4\nmodel: [debug\n")
    with pytest.raises(ValueError, match=f"{config} is not valid YAML"):
        parse_args([str(config)])
    with pytest.raises(ValueError, match="--sample_prompts '\\[a' is not a valid value"):
        parse_args(["--sample_prompts", "[a"])
    # A key given twice in a preset keeps only the last silently in plain YAML; an empty value on the command line
    # (--init_from "$MODEL" with MODEL unset) read as null trained from random weights.
    config.write_text("lr: 3e-4\nmax_steps: 10\nlr: 1e-3\n")
    with pytest.raises(ValueError, match=f"{config}: 'lr' is given twice in one mapping; name it once"):
        parse_args([str(config)])
    for flag in ("--init_from", "--data", "--lr"):
        with pytest.raises(ValueError, match=f"{flag} is given an empty value; give one, or null to unset it"):
            parse_args([flag, ""])
    assert parse_args(["--init_from", "null"]).init_from is None


def test_a_wrong_hellaswag_path_fails_before_the_first_step(tmp_path):
    write_jsonl(tmp_path / "corpus.jsonl", make_documents(60, seed=2))
    result = run_train(tmp_path / "run", "--data", str(tmp_path / "corpus.jsonl"), "--hellaswag_data",
                       str(tmp_path / "hellaswag.jsonl"), "--max_steps", "50", check=False)  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: hellaswag: data file not found" in result.stderr and "step " not in result.stdout
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    "command, message",
    [
        (["eval.py", "hellaswag", "--model", "./no-such-model", "--data", "data/hellaswag_sample.jsonl"],
         "error: model directory not found: ./no-such-model"),
        (["-m gpt_scratch.convert", "to-gpt2", "/no/such/model", "/tmp/out"],
         "error: model directory not found: /no/such/model"),
        (["-m gpt_scratch.data", "prepare", "/no/such/corpus.jsonl", "/tmp/out"],
         "error: no such file or directory: /no/such/corpus.jsonl"),
    ],
)  # fmt: skip
def test_command_line_tools_print_one_clear_line(command, message):
    result = run_command(*command, check=False, cwd=ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert message in result.stderr


def test_empty_sources_missing_paths_and_damaged_tokenizers_are_named_with_a_fix_that_works(tmp_path, tiny_tokenizer):
    """What an offline user meets with an empty corpus, a limit of 0, an empty tokenizer name, a model or checkpoint
    path that is not there, an empty task file, and a tokenizer directory missing a file: one line each, naming the
    thing, with a fix that itself works."""
    (tmp_path / "runs").mkdir()
    empty_text, empty_items = tmp_path / "empty.txt", tmp_path / "piqa.jsonl"
    empty_text.touch()
    empty_items.touch()
    (tmp_path / "empty-tokenizer.yaml").write_text('tokenizer: ""\n')
    damaged = tmp_path / "tok"
    damaged.mkdir()
    (damaged / "tokenizer.json").write_text((tiny_tokenizer / "tokenizer.json").read_text())
    cases = [
        ("-m gpt_scratch.tokenizer", ["train", "--data", str(empty_text), "--vocab_size", "512", "--out", "t"],
         f"error: {empty_text} holds no text (only empty files or documents)"),
        ("-m gpt_scratch.tokenizer", ["train", "--data", "python-stdlib", "--vocab_size", "512", "--out", "t",
                                      "--max_bytes", "0"], "argument --max_bytes: 0 is not a positive number"),
        ("eval.py", ["perplexity", "--model", "runs/no-such-model"], "error: model directory not found: runs/no-such"),
        ("eval.py", ["tasks", "--model", str(tmp_path), "--tasks", "piqa", "--data", f"piqa={empty_items}"],
         f"could not load 1: piqa: no items to score in {empty_items}"),
        ("train.py", [str(tmp_path / "empty-tokenizer.yaml")], "error: tokenizer is empty; use tokenizer: gpt2, or"),
        ("train.py", ["--data", str(empty_text), "--hellaswag_data", "null", "--run_dir", "runs/a"],
         f"error: {empty_text} holds no text"),
        ("train.py", ["--resume", "runs/a/checkpoints/step-000300", "--run_dir", "runs/a"],
         "error: checkpoint runs/a/checkpoints/step-000300 does not exist (runs/a holds none); or use --resume auto"),
        ("train.py", ["--tokenizer", str(damaged), "--run_dir", "runs/b"], f"error: tokenizer directory {damaged} "
         f"lacks tokenizer_config.json (a transformers fast-tokenizer directory has both); restore it from where the "
         f"directory came from, or train a new one into another directory: `python -m gpt_scratch.tokenizer train "
         f"--data python-stdlib --vocab_size 4096 --out {damaged}-new`, then use tokenizer: {damaged}-new"),
    ]  # fmt: skip
    env = {**os.environ, "GPT_SCRATCH_TRACEBACK": ""}
    for program, arguments, message in cases:
        if program == "train.py":
            result = train_in_process(arguments, env, cwd=tmp_path)
        else:
            result = run_command(program, *arguments, check=False, cwd=tmp_path)
        assert result.returncode in (1, 2) and "Traceback" not in result.stderr, (arguments, result.stderr[-2000:])
        assert message in result.stderr.strip().splitlines()[-1], (arguments, result.stderr[-2000:])
    assert not (tmp_path / "t").exists() and not Path(f"{damaged}-new").exists()  # the advised --out is free
    assert not (tmp_path / "runs" / "b").exists()  # a bad tokenizer stops the run before its directory is made


def test_binary_noise_is_named_and_a_source_validation_would_take_whole_is_refused_before_step_1(tmp_path):
    """A directory of random bytes trained on without a word (bpb 6.0); a mixture source whose held-out documents
    are all it has used to fail after the step-0 evaluation, blaming the process count, with advice (lower the run's
    val_docs) that shrinks every source's validation."""
    noise = tmp_path / "noise"
    noise.mkdir()
    for index in range(8):
        (noise / f"{index}.txt").write_bytes(os.urandom(1500))
    few = write_jsonl(tmp_path / "few.jsonl", make_documents(4, seed=3))
    data = json.dumps({f"{noise}/*.txt": 0.5, str(few): 0.5})
    result = run_train(tmp_path / "run", "--data", data, "--val_docs", "4", "--hellaswag_data", "null", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr and "step 1" not in result.stdout
    assert f"of the characters of {noise}/*.txt's held-out documents are not text (undecodable bytes or control " \
        "characters): is it a binary file?" in result.stdout, result.stdout  # fmt: skip
    assert (f"error: the 4 documents held out for validation are the whole of {few}, and none is left to train on; "
            f"give few its own val_docs in the list form: data: [{{path: {few}, weight: 0.5, val_docs: 1}}, ...]"
            ) in result.stderr, result.stderr  # fmt: skip
    assert not (tmp_path / "run" / "checkpoints").exists()  # a run refused in setup leaves no empty checkpoints/
    with pytest.raises(ValueError, match="has only 4 documents, fewer than the 20 asked for validation; lower "
                       "val_docs, e.g. --val_docs 1"):  # fmt: skip
        validation_documents(TextSource(str(few)), 20)
