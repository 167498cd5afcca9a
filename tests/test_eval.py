"""eval.py and perplexity: CLI results equal the library's; sliding-window perplexity equals the textbook recipe."""

import json
import math
from pathlib import Path

import evaluate
import pytest
import torch
import torch.nn.functional as F
from data_fixtures import make_documents, write_jsonl
from train_runs import run_command

from gpt_scratch import save_model_dir
from gpt_scratch.data import TextSource
from gpt_scratch.hellaswag import evaluate_hellaswag, load_rows, to_example
from gpt_scratch.perplexity import evaluate_perplexity, source_tokens
from gpt_scratch.tokenizer import EOT_ID, gpt2_encoding, gpt2_tokenizer

from conftest import make_gpt2, ours_from

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "hellaswag_sample.jsonl"


def per_token_perplexity(model, tokens: torch.Tensor, seq_len: int, stride: int) -> float:
    """The definition, one forward per target: target t of chunk [a, b) (a = 1 + k * stride) is predicted from
    tokens[max(0, b - 1 - seq_len) : t]."""
    nll = 0.0
    with torch.no_grad():
        for t in range(1, len(tokens)):
            b = min(1 + (t - 1) // stride * stride + stride, len(tokens))
            context = tokens[max(0, b - 1 - seq_len) : t]
            logits = model(context.unsqueeze(0)).logits[0, -1]
            nll += F.cross_entropy(logits.unsqueeze(0), tokens[t : t + 1]).item()
    return math.exp(nll / (len(tokens) - 1))


@pytest.mark.parametrize("seq_len, stride", [(32, 32), (32, 8), (32, 31)])
def test_sliding_window_perplexity_equals_textbook(seq_len, stride):
    gpt2 = make_gpt2(seed=30)
    tokens = torch.randint(0, 50257, (103,))
    result = evaluate_perplexity(ours_from(gpt2), tokens, seq_len=seq_len, stride=stride)
    assert result["tokens"] == 102  # every token but the first is predicted exactly once
    assert result["perplexity"] == pytest.approx(per_token_perplexity(gpt2, tokens, seq_len, stride), rel=1e-5)


def test_source_tokens_are_the_documents_in_order(tmp_path):
    docs = make_documents(20, seed=4)
    write_jsonl(tmp_path / "t.jsonl", docs)
    tokens = source_tokens(TextSource(str(tmp_path / "t.jsonl")), max_tokens=10**6).tolist()
    encoding = gpt2_encoding()
    assert tokens == [t for d in docs for t in [EOT_ID, *encoding.encode_ordinary(d)]]


@pytest.fixture(scope="module")
def model_and_dir(tmp_path_factory):
    model = ours_from(make_gpt2(seed=31))
    return model, save_model_dir(model, tmp_path_factory.mktemp("evalcli") / "model")


def run_cli(*args: str) -> dict:
    result = run_command("eval.py", *args)
    start = result.stdout.index("{")
    return json.loads(result.stdout[start:])


def test_cli_hellaswag_equals_library_and_saves_with_evaluate(tmp_path, model_and_dir):
    model, model_dir = model_and_dir
    out = tmp_path / "results.json"
    printed = run_cli("hellaswag", "--model", str(model_dir), "--data", str(SAMPLE), "--limit", "20",
                      "--device", "cpu", "--output", str(out))  # fmt: skip
    expected = evaluate_hellaswag(model, gpt2_tokenizer(), str(SAMPLE), limit=20)
    assert printed == pytest.approx(expected)
    saved = json.loads(out.read_text())
    assert saved["acc"] == printed["acc"] and saved["acc_norm"] == printed["acc_norm"]
    assert "_timestamp" in saved and "_python_version" in saved  # what evaluate.save records


def test_cli_perplexity_on_a_local_corpus(tmp_path, model_and_dir):
    model, model_dir = model_and_dir
    write_jsonl(tmp_path / "c.jsonl", make_documents(15, seed=5))
    printed = run_cli("perplexity", "--model", str(model_dir), "--data", str(tmp_path / "c.jsonl"),
                      "--max-tokens", "300", "--seq-len", "64", "--stride", "32", "--device", "cpu")  # fmt: skip
    tokens = source_tokens(TextSource(str(tmp_path / "c.jsonl")), 300)
    assert printed["perplexity"] == pytest.approx(per_token_perplexity(model, tokens, 64, 32), rel=1e-5)


def test_evaluate_metric_module_loads_offline_and_agrees(model_and_dir):
    model, _ = model_and_dir
    result = evaluate_hellaswag(model, gpt2_tokenizer(), str(SAMPLE), limit=30, return_details=True)
    examples = [to_example(row) for row in load_rows(str(SAMPLE))[:30]]
    metric = evaluate.load(str(ROOT / "gpt_scratch" / "metrics" / "hellaswag_accuracy"))
    computed = metric.compute(
        predictions=[d["logliks"] for d in result["details"]],
        references=[ex.gold for ex in examples],
        choice_lengths=[[len(c) for c in ex.choices] for ex in examples],
    )
    assert computed == pytest.approx({k: result[k] for k in computed})
