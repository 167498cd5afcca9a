"""HellaSwag: the same log-likelihoods and accuracies as lm-evaluation-harness, for our model and GPT-2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from train_runs import free_port

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM, save_model_dir
from gpt_scratch.hellaswag import evaluate_hellaswag, load_rows, preprocess, to_example, write_lm_eval_task
from gpt_scratch.tokenizer import gpt2_encoding, gpt2_tokenizer

from conftest import make_gpt2, ours_from

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "hellaswag_sample.jsonl"
LIMIT = 48


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(GPTScratchConfig.from_preset("tiny", n_positions=40))  # short: truncation runs
    return save_model_dir(model, tmp_path_factory.mktemp("hs") / "model")


@pytest.fixture(scope="module")
def model(model_dir) -> GPTScratchForCausalLM:
    return GPTScratchForCausalLM.from_pretrained(model_dir).eval()


def test_sample_covers_both_sources_markup_and_label_types():
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()][:LIMIT]
    text = " ".join(r["ctx_a"] + " " + r["ctx_b"] + " " + " ".join(r["endings"]) for r in rows)
    for marker in ("[header]", "[title]", "[step]", "[substeps]", "  "):
        assert marker in text
    assert any(r["ctx_b"] == "" for r in rows)
    assert {type(r["label"]) for r in rows} == {int, str}


def test_the_sample_gives_nothing_away_by_length_and_is_what_its_script_writes(tmp_path):
    """A made-up item must not be solvable by length: acc_norm would then measure length, not the model (the right
    ending used to be the longest in 171 of 200 items). By chance the right one is longest in about 1 of 4."""
    script = ROOT / "scripts" / "make_hellaswag_sample.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "sample.jsonl")], check=True)
    assert (tmp_path / "sample.jsonl").read_text() == SAMPLE.read_text()
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    encoding = gpt2_encoding()
    for size in (len, lambda ending: len(encoding.encode_ordinary(" " + ending))):
        longest = sum(max(range(4), key=lambda i: size(r["endings"][i])) == int(r["label"]) for r in rows)
        shortest = sum(min(range(4), key=lambda i: size(r["endings"][i])) == int(r["label"]) for r in rows)
        assert longest < 0.35 * len(rows) and shortest < 0.35 * len(rows), (longest, shortest)
    assert all(len(set(r["endings"])) == 4 for r in rows)


@pytest.mark.parametrize(
    "text",
    ["  A man [title] walks.  ", "[header] How to x [title] Do y. [step] Z  w.", "a   b", "[substeps] end [x]", ""],
)
def test_preprocess_equals_lm_eval(text):
    from lm_eval.tasks.hellaswag.utils import preprocess as reference

    assert preprocess(text) == reference(text)


def lm_eval_on_sample(model_dir: Path, task_manager, limit: int) -> dict:
    """lm-evaluation-harness's HF backend on a saved directory, the sample as a local hellaswag task (the
    ``lm_eval_tasks`` fixture's), samples logged."""
    import lm_eval

    return lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={model_dir},trust_remote_code=True,dtype=float32",
        tasks=["hellaswag_local"],
        task_manager=task_manager,
        log_samples=True,
        batch_size=16,
        device="cpu",
        limit=limit,
    )


def test_logliks_and_accuracies_equal_lm_eval_harness(lm_eval_tasks, model_dir, model):
    reference = lm_eval_on_sample(model_dir, lm_eval_tasks, LIMIT)
    ours = evaluate_hellaswag(model, gpt2_tokenizer(), str(SAMPLE), batch_size=16, limit=LIMIT, return_details=True)
    samples = sorted(reference["samples"]["hellaswag_local"], key=lambda s: s["doc_id"])
    assert len(samples) == len(ours["details"]) == LIMIT
    for sample, detail in zip(samples, ours["details"]):
        expected = [loglik for loglik, _ in sample["filtered_resps"]]
        assert detail["logliks"] == pytest.approx(expected, abs=1e-4)
    metrics = reference["results"]["hellaswag_local"]
    assert ours["acc"] == metrics["acc,none"]
    assert ours["acc_norm"] == metrics["acc_norm,none"]
    assert ours["acc_stderr"] == pytest.approx(metrics["acc_stderr,none"])
    assert ours["acc_norm_stderr"] == pytest.approx(metrics["acc_norm_stderr,none"])


def test_batch_size_does_not_change_results(model):
    tokenizer = gpt2_tokenizer()
    one = evaluate_hellaswag(model, tokenizer, str(SAMPLE), batch_size=1, limit=24, return_details=True)
    many = evaluate_hellaswag(model, tokenizer, str(SAMPLE), batch_size=32, limit=24, return_details=True)
    assert (one["acc"], one["acc_norm"]) == (many["acc"], many["acc_norm"])
    for a, b in zip(one["details"], many["details"]):
        assert a["logliks"] == pytest.approx(b["logliks"], abs=1e-4)


def test_two_processes_equal_one(tmp_path, model_dir, model):
    out = tmp_path / "result.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", free_port(), str(ROOT / "tests" / "dist_eval_worker.py"), "hellaswag",
               str(model_dir), str(SAMPLE), str(out), "27"]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    distributed = json.loads(out.read_text())
    single = evaluate_hellaswag(model, gpt2_tokenizer(), str(SAMPLE), batch_size=8, limit=27)
    assert distributed == pytest.approx(single)
    assert distributed["n"] == 27  # an odd count: the uneven split is padded and the padding dropped


def test_gpt2_and_our_model_with_the_same_weights_score_the_same():
    gpt2 = make_gpt2(seed=21)
    ours = ours_from(gpt2)
    tokenizer = gpt2_tokenizer()
    a = evaluate_hellaswag(gpt2, tokenizer, str(SAMPLE), limit=24, return_details=True)
    b = evaluate_hellaswag(ours, tokenizer, str(SAMPLE), limit=24, return_details=True)
    assert (a["acc"], a["acc_norm"]) == (b["acc"], b["acc_norm"])
    for x, y in zip(a["details"], b["details"]):
        assert x["logliks"] == pytest.approx(y["logliks"], abs=1e-4)


def test_nanogpt_style_equals_build_nanogpt_scoring():
    """build-nanogpt: raw ctx, tokens of " " + ending, lowest mean token loss wins."""
    model = ours_from(make_gpt2(seed=22))  # n_positions 128: no truncation, as in build-nanogpt
    rows = load_rows(str(SAMPLE))[:16]
    encoding = gpt2_encoding()
    expected = []
    with torch.no_grad():
        for row in rows:
            ctx = encoding.encode(row["ctx"])
            losses = []
            for ending in row["endings"]:
                end = encoding.encode(" " + ending)
                tokens = torch.tensor([ctx + end])
                logits = model(tokens[:, :-1]).logits[0, -len(end) :]
                losses.append(F.cross_entropy(logits, tokens[0, -len(end) :]).item())
            expected.append(float(min(range(4), key=lambda j: losses[j]) == int(row["label"])))
    result = evaluate_hellaswag(model, gpt2_tokenizer(), rows, style="nanogpt")
    assert result["acc_norm"] == sum(expected) / len(expected)


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = {"activity_label": "A", "ctx_a": "b", "ctx_b": "c", "endings": ["1", "2", "3", "4"], "label": 0}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({k: v for k, v in GOOD.items() if k != "ctx_a"}, r"bad.jsonl:2: missing field 'ctx_a'"),
        ({**GOOD, "label": 4}, r"bad.jsonl:2: field 'label' is 4, out of range 0-3"),
        ({**GOOD, "label": "x"}, r"bad.jsonl:2: field 'label' must be an integer 0-3, got 'x'"),
        ({**GOOD, "endings": ["1", "2", "3"]}, r"bad.jsonl:2: field 'endings' must be a list of 4 strings, got 3"),
        ("{not json", r"bad.jsonl:2: not valid JSON"),
    ],
)
def test_malformed_rows_name_file_line_and_field(tmp_path, bad, message):
    path = write_rows(tmp_path / "bad.jsonl", [GOOD, bad])
    with pytest.raises(ValueError, match=message):
        load_rows(str(path))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="HellaSwag file not found"):
        load_rows(str(tmp_path / "none.jsonl"))


def test_parquet_file_reads_the_same_rows_as_jsonl(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = load_rows(str(SAMPLE))[:10]
    as_strings = [{**row, "label": str(row["label"])} for row in rows]  # the Hub's parquet stores labels as strings
    pq.write_table(pa.Table.from_pylist(as_strings), tmp_path / "hs.parquet")
    assert [to_example(r) for r in load_rows(str(tmp_path / "hs.parquet"))] == [to_example(r) for r in rows]


def test_lm_eval_cli_on_a_saved_modern_model_equals_our_scoring(tmp_path):
    """lm-eval's own command line on a directory of the modern architecture (rotary, RMSNorm, untied head, ...)."""
    from conftest import make_modern

    model = make_modern(seed=5, n_positions=40)
    model_dir = save_model_dir(model, tmp_path / "modern")
    tasks = write_lm_eval_task(SAMPLE, tmp_path / "tasks")
    command = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
               f"pretrained={model_dir},trust_remote_code=True,dtype=float32", "--tasks", "hellaswag_local",
               "--include_path", str(tasks), "--limit", "16", "--batch_size", "16", "--device", "cpu",
               "--output_path", str(tmp_path / "out"), "--log_samples"]  # fmt: skip
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())["results"]["hellaswag_local"]
    samples = [json.loads(line) for line in next((tmp_path / "out").rglob("samples_hellaswag_local_*.jsonl")).open()]
    ours = evaluate_hellaswag(model, gpt2_tokenizer(), str(SAMPLE), batch_size=16, limit=16, return_details=True)
    for sample in samples:
        expected = [float(loglik) for loglik, _ in sample["filtered_resps"]]
        assert ours["details"][sample["doc_id"]]["logliks"] == pytest.approx(expected, abs=1e-4)
    assert (ours["acc"], ours["acc_norm"]) == (results["acc,none"], results["acc_norm,none"])
