"""Bad input, as users make it: one clear line naming the problem and the fix, no traceback, nothing lost."""

import json

import pytest
from data_fixtures import make_documents, write_jsonl
from train_runs import ROOT, run_command, run_train

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
