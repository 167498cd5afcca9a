"""A tokenizer trained on your own corpus, end to end: ``python -m gpt_scratch.tokenizer train``, the data pipeline
and token shards, train.py, export, resume, bits per byte, HellaSwag and lm-eval, and every bad input.

The independent references: transformers' ``AutoTokenizer`` on the saved directory (Hugging Face ``tokenizers``'
BPE, which our pipeline does not use: it runs tiktoken), hand-counted bytes, and lm-evaluation-harness.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from data_fixtures import write_jsonl
from test_hellaswag import lm_eval_on_sample
from test_remote_code import BLOCK_GPT_SCRATCH, transformers_path
from train_runs import run_command, run_train, trainer_state
from transformers import AutoTokenizer

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM, save_model_dir
from gpt_scratch.data import PackedBatches, TextSource, TokenShardBatches, prepare_shards, validation_documents
from gpt_scratch.data.sources import _stdlib_files
from gpt_scratch.hellaswag import evaluate_hellaswag
from gpt_scratch.perplexity import evaluate_perplexity, token_byte_lengths
from gpt_scratch.tokenizer import load_tokenizer
from gpt_scratch.training import validation_metrics

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "hellaswag_sample.jsonl"
TEXTS = [
    "class Stack:\n    def push(self, item):\n        self.items.append(item)  # O(1)\n\n\n",
    "naïve café — Zürich, 東京, Москва 🤖👍🏽 \r\n\ttabs\t\t and   runs   of spaces   ",
    "first<|endoftext|>second <|endoftext|> third",
    "x = [1234567890, 3.14e-10]; print(f'{x!r:>10}')",
    "",
]


def tokenizer_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_command("-m gpt_scratch.tokenizer", "train", *args, check=check)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Real text: 300 of this interpreter's standard library files, one document each, as jsonl."""
    texts = [Path(f).read_text(encoding="utf-8", errors="replace") for f in _stdlib_files()[:300]]
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "code.jsonl", texts)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    result = tokenizer_cli("--data", str(corpus), "--vocab_size", "700", "--out", str(out), "--val_docs", "20")
    return out, result.stdout


@pytest.fixture(scope="module")
def other(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "other"
    result = tokenizer_cli("--data", str(corpus), "--vocab_size", "512", "--out", str(out), "--max_docs", "100")
    assert "on 100 documents" in result.stdout  # --max_docs bounds the corpus
    return out


def test_trained_directory_is_a_fast_tokenizer_with_every_byte_and_eot_last(trained):
    out, stdout = trained
    assert {p.name for p in out.iterdir()} >= {"tokenizer.json", "tokenizer_config.json"}
    hf = AutoTokenizer.from_pretrained(out)
    assert len(hf) == 768  # 700 rounded up to a multiple of 128
    assert hf.convert_tokens_to_ids("<|endoftext|>") == 767 == hf.eos_token_id == hf.pad_token_id
    definition = json.loads((out / "tokenizer.json").read_text())
    assert len([t for t in definition["model"]["vocab"] if len(t) == 1]) >= 256
    # The one-line summary: documents (300 less the 20 held out), bytes, seconds, bytes per token on held-out text.
    assert "trained 768 tokens on 280 documents" in stdout and "bytes per token" in stdout


@pytest.mark.parametrize("text", TEXTS)
def test_pipeline_ids_equal_transformers_and_decode_back(trained, text):
    out, _ = trained
    ours = load_tokenizer(str(out))
    hf = AutoTokenizer.from_pretrained(out)
    with ThreadPoolExecutor(2) as pool:
        tokens = ours.encode_documents([text], pool).tolist()
    # The pipeline encodes "<|endoftext|>" in a document as text, not as the separator.
    assert tokens == [ours.eot_id, *hf(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]]
    assert hf.decode(tokens[1:]) == text


def test_pipeline_ids_equal_transformers_on_held_out_source_text(trained, corpus):
    out, _ = trained
    ours, hf = load_tokenizer(str(out)), AutoTokenizer.from_pretrained(out)
    docs = validation_documents(TextSource(str(corpus)), 20)
    assert [ours.encoding.encode_ordinary(d) for d in docs] == hf(docs, add_special_tokens=False)["input_ids"]


def test_held_out_documents_never_reach_the_trainer(tmp_path):
    """A word found only in the first documents becomes tokens when they are trained on, never when held out."""
    rare = "zqxvbnmzqxvbnm"
    docs = [f"{rare} = {rare}({rare})\n" * 50] * 5 + [f"def f{i}(x):\n    return x + {i}\n" * 20 for i in range(80)]
    source = write_jsonl(tmp_path / "docs.jsonl", docs)
    for val_docs, learned in ((5, False), (0, True)):
        out = tmp_path / f"tok-{val_docs}"
        tokenizer_cli("--data", str(source), "--vocab_size", "384", "--out", str(out), "--val_docs", str(val_docs))
        vocab = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
        assert any("zqx" in token for token in vocab) == learned


def test_max_bytes_bounds_the_corpus(corpus, tmp_path):
    result = tokenizer_cli("--data", str(corpus), "--vocab_size", "384", "--out", str(tmp_path / "t"),
                           "--max_bytes", "300000")  # fmt: skip
    documents, megabytes = re.search(r"on ([\d,]+) documents \(([\d.]+) MB\)", result.stdout).groups()
    assert 0.3 <= float(megabytes) < 3.0 and int(documents) < 280  # stops at the first document past the bound


def test_gpt2_pattern_option_saves_a_class_that_keeps_the_ids(corpus, tmp_path):
    out = tmp_path / "gpt2-split"
    tokenizer_cli("--data", str(corpus), "--vocab_size", "384", "--out", str(out), "--pattern", "gpt2",
                  "--max_docs", "60")  # fmt: skip
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] == "GPT2Tokenizer"
    ours, hf = load_tokenizer(str(out)), AutoTokenizer.from_pretrained(out)
    assert ours.encoding.encode_ordinary(TEXTS[0]) == hf(TEXTS[0])["input_ids"]


def test_packed_batches_and_shards_carry_the_tokenizers_ids(trained, other, corpus, tmp_path):
    out, _ = trained
    ours, hf = load_tokenizer(str(out)), AutoTokenizer.from_pretrained(out)
    source = TextSource(str(corpus))
    docs = validation_documents(source, 30)
    expected = [t for d in docs for t in (ours.eot_id, *hf(d, add_special_tokens=False)["input_ids"])]
    stream = PackedBatches(source, 2, 64, shuffle=False, tokenizer=ours)
    inputs, targets = stream.next_batch()
    assert inputs.flatten().tolist() == expected[:128] and targets.flatten().tolist() == expected[1:129]

    shards = tmp_path / "shards"
    prepare_shards(source, shards, shard_tokens=50_000, tokenizer=ours)
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["tokenizer"] == {"name": str(out), "sha256": ours.sha256}
    inputs, _ = TokenShardBatches(shards, 2, 64, tokenizer=ours).next_batch()
    assert inputs.flatten().tolist() == expected[:128]
    for wrong in (load_tokenizer("gpt2"), load_tokenizer(str(other))):
        names = re.escape(repr(str(out))), re.escape(repr(wrong.name))
        refused = f"made with tokenizer {names[0]}.*this run's tokenizer is {names[1]}"
        with pytest.raises(ValueError, match=refused):
            TokenShardBatches(shards, 2, 64, tokenizer=wrong)
        with pytest.raises(ValueError, match="Prepare into another directory"):
            prepare_shards(source, shards, shard_tokens=50_000, tokenizer=wrong)


def test_bits_per_byte_equals_a_hand_count():
    """Two tiny documents, "ab" (2 bytes) and "é!" (3 bytes): bpb is the summed nats of every target / ln 2 / the
    bytes the targets spell, <|endoftext|> 0."""
    tokenizer = load_tokenizer("gpt2")
    with ThreadPoolExecutor(1) as pool:
        tokens = torch.from_numpy(tokenizer.encode_documents(["ab", "é!"], pool).astype(np.int64))
    assert len(tokens) == 5  # eot ab eot é ! : targets of 2, 0, 2 and 1 bytes
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(GPTScratchConfig.from_preset("tiny", n_positions=16)).eval()
    with torch.no_grad():
        logits = model(tokens[None, :-1]).logits[0]
    nats = F.cross_entropy(logits, tokens[1:], reduction="sum").item()
    expected = nats / math.log(2) / (2 + 3)
    metrics = validation_metrics(model, [tokens[None]], Accelerator(cpu=True), None, tokenizer.token_bytes())
    assert metrics["val_bpb"] == pytest.approx(expected, rel=1e-5)
    assert metrics["val_loss"] == pytest.approx(nats / 4, rel=1e-5)
    hf_bytes = token_byte_lengths(tokenizer.hf_tokenizer())
    assert torch.equal(hf_bytes, tokenizer.token_bytes())  # eval.py's count from the saved tokenizer agrees
    result = evaluate_perplexity(model, tokens, seq_len=8, token_bytes=hf_bytes)
    assert result["bits_per_byte"] == pytest.approx(expected, rel=1e-5) and result["bytes"] == 5


# Runs in a fresh interpreter where gpt_scratch cannot be imported: only what the exported directory holds.
CHILD = BLOCK_GPT_SCRATCH + textwrap.dedent(
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    model_dir, text = sys.argv[1], sys.argv[2]
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True)
    generator = pipeline("text-generation", model=model_dir, trust_remote_code=True)
    out = generator("def f(x):", max_new_tokens=6, do_sample=False)[0]["generated_text"]
    # The most common call there is: everything the tokenizer returns goes to generate (4.57 used to add
    # token_type_ids, which generate refuses).
    direct = model.generate(**tokenizer("def f(x):", return_tensors="pt"), max_new_tokens=6, do_sample=False)
    print(json.dumps({"ids": tokenizer(text)["input_ids"], "vocab": model.config.vocab_size,
                      "eos": model.config.eos_token_id, "pipeline": out, "generate": tokenizer.decode(direct[0])}))
    """
)


@pytest.fixture(scope="module")
def trained_run(trained, corpus, tmp_path_factory) -> Path:
    out, _ = trained
    run_dir = tmp_path_factory.mktemp("run") / "own"
    run_train(run_dir, "--data", str(corpus), "--tokenizer", str(out), "--max_steps", "6", "--eval_interval", "3",
              "--checkpoint_interval", "3", "--hellaswag_data", "null", "--keep_checkpoints", "3")  # fmt: skip
    return run_dir


@pytest.mark.parametrize("version", [None, "4.57.6"], ids=["installed", "4.57.6"])
def test_exported_model_carries_its_tokenizer_to_a_process_without_the_package(trained, trained_run, version,
                                                                               tmp_path):  # fmt: skip
    out, _ = trained
    ours = load_tokenizer(str(out))
    model_dir = trained_run / "model"
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": transformers_path(version)}
    result = subprocess.run([sys.executable, "-c", CHILD, str(model_dir), TEXTS[0]], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    child = json.loads(result.stdout.strip().splitlines()[-1])
    assert child["ids"] == ours.encoding.encode_ordinary(TEXTS[0])
    assert (child["vocab"], child["eos"]) == (ours.vocab_size, ours.eot_id) == (768, 767)
    model = GPTScratchForCausalLM.from_pretrained(model_dir).eval()
    prompt = torch.tensor([ours.encoding.encode_ordinary("def f(x):")])
    generated = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, do_sample=False)
    assert child["pipeline"] == child["generate"] == ours.encoding.decode(generated[0].tolist())
    assert "token_type_ids" not in result.stderr, result.stderr[-2000:]


def test_training_records_bits_per_byte_and_the_tokenizer(trained, trained_run):
    out, _ = trained
    state = trainer_state(trained_run)
    assert state["tokenizer_identity"] == load_tokenizer(str(out)).identity()
    assert [step for step, _ in state["history"]["val_bpb"]] == [0, 3, 6]  # before the first step, then every 3
    assert all(0 < bpb < 20 for _, bpb in state["history"]["val_bpb"])
    assert json.loads((trained_run / "model" / "config.json").read_text())["vocab_size"] == 768
    assert "bits per byte" in (trained_run / "model" / "README.md").read_text()


def test_resume_with_another_tokenizer_is_refused_by_name(trained, other, trained_run, corpus):
    out, _ = trained
    result = run_train(trained_run, "--data", str(corpus), "--tokenizer", str(other), "--max_steps", "8",
                       "--resume", "auto", "--hellaswag_data", "null", check=False)  # fmt: skip
    assert result.returncode != 0 and "cannot resume" in result.stderr
    assert f"tokenizer: '{out} (sha256" in result.stderr and f"'{other} (sha256" in result.stderr


def test_resume_with_a_tokenizer_retrained_in_place_is_refused(trained, corpus, tmp_path):
    out, _ = trained
    tokenizer = tmp_path / "tokenizer"
    shutil.copytree(out, tokenizer)
    run_dir = tmp_path / "run"
    args = ["--data", str(corpus), "--tokenizer", str(tokenizer), "--hellaswag_data", "null"]
    run_train(run_dir, *args, "--max_steps", "2", "--checkpoint_interval", "2")
    shutil.rmtree(tokenizer)  # trained again, on other text, at the same path
    tokenizer_cli("--data", str(corpus), "--vocab_size", "768", "--out", str(tokenizer), "--max_docs", "50")
    result = run_train(run_dir, *args, "--max_steps", "4", "--resume", "auto", check=False)
    assert result.returncode != 0 and "cannot resume" in result.stderr
    saved = f"tokenizer: '{tokenizer} (sha256 {load_tokenizer(str(out)).sha256[:12]})' in the checkpoint"
    assert saved in result.stderr


def test_hellaswag_with_the_models_own_tokenizer_equals_lm_eval(trained, tmp_path, lm_eval_tasks):
    out, _ = trained
    ours = load_tokenizer(str(out))
    torch.manual_seed(3)
    config = GPTScratchConfig.from_preset("tiny", n_positions=48, vocab_size=ours.vocab_size,
                                          bos_token_id=ours.eot_id, eos_token_id=ours.eot_id,
                                          pad_token_id=ours.eot_id)  # fmt: skip
    model = GPTScratchForCausalLM(config).eval()
    model_dir = save_model_dir(model, tmp_path / "model", ours.hf_tokenizer(48))
    reference = lm_eval_on_sample(model_dir, lm_eval_tasks, 24)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)  # what eval.py uses: the directory's
    scored = evaluate_hellaswag(model, tokenizer, str(SAMPLE), batch_size=16, limit=24, return_details=True)
    samples = sorted(reference["samples"]["hellaswag_local"], key=lambda s: s["doc_id"])
    for sample, detail in zip(samples, scored["details"], strict=True):
        assert detail["logliks"] == pytest.approx([loglik for loglik, _ in sample["filtered_resps"]], abs=1e-4)
    metrics = reference["results"]["hellaswag_local"]
    assert (scored["acc"], scored["acc_norm"]) == (metrics["acc,none"], metrics["acc_norm,none"])


def test_train_py_trains_the_missing_tokenizer_on_one_of_two_processes_as_the_cli_would_then_reuses_it(
    corpus, tmp_path
):
    """`tokenizer_vocab_size` in the config: a run whose tokenizer directory does not exist trains it first, under 2
    processes the main one trains while the other waits (it would fail to find the directory otherwise), and the
    result is the very tokenizer `python -m gpt_scratch.tokenizer train` makes. A later run reuses it untouched, also
    one asking for another size (the size applies to training a missing one), and says so."""
    tokenizer = tmp_path / "tokenizer"
    args = ["--data", str(corpus), "--tokenizer", str(tokenizer), "--tokenizer_vocab_size", "700", "--max_steps", "2",
            "--tokens_per_step", "256", "--hellaswag_data", "null", "--checkpoint_interval", "2"]  # fmt: skip
    first = run_train(tmp_path / "two", *args, nproc=2)
    assert f"tokenizer: {tokenizer} does not exist yet; training it" in first.stdout, first.stdout[-2000:]
    tokenizer_cli("--data", str(corpus), "--vocab_size", "700", "--out", str(tmp_path / "cli"))  # holds out 200
    trained = (tokenizer / "tokenizer.json").read_bytes()
    assert trained == (tmp_path / "cli" / "tokenizer.json").read_bytes()
    assert not list(tmp_path.glob(".tokenizer.tmp-*"))

    again = run_train(tmp_path / "again", *args)
    assert "does not exist yet" not in again.stdout and (tokenizer / "tokenizer.json").read_bytes() == trained
    assert json.loads((tmp_path / "again" / "model" / "config.json").read_text())["vocab_size"] == 768
    other = run_train(tmp_path / "other", *args, "--tokenizer_vocab_size", "512")
    assert f"tokenizer: {tokenizer} exists (768 tokens) and is used as it is" in other.stdout
    assert (tokenizer / "tokenizer.json").read_bytes() == trained
    assert json.loads((tmp_path / "other" / "model" / "config.json").read_text())["vocab_size"] == 768


def test_a_run_that_needs_a_tokenizer_another_run_is_training_waits_for_it_and_uses_it(
    corpus, tmp_path, tiny_tokenizer
):
    """The README's two quickstarts started side by side both need runs/tokenizer-stdlib: the second used to fail
    renaming its own copy into place. Here "another run" is a process that holds the tokenizer's training lock (as
    train.py takes it) while it writes the tokenizer; train.py says it waits, then uses that tokenizer."""
    from gpt_scratch.tokenizer.trainer import training_lock

    tokenizer = tmp_path / "tokenizer"
    with training_lock(tokenizer):  # where the lock file is: the one train.py takes
        pass
    other_run = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, shutil, time
            with open({str(tokenizer.with_name(".tokenizer.lock"))!r}, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                print("holding", flush=True)
                time.sleep(2)  # training
                shutil.copytree({str(tiny_tokenizer)!r}, {str(tokenizer)!r})
        """)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert other_run.stdout.readline().strip() == "holding"
    result = run_train(tmp_path / "second", "--data", str(corpus), "--tokenizer", str(tokenizer),
                       "--tokenizer_vocab_size", "700", "--max_steps", "2", "--tokens_per_step", "128",
                       "--hellaswag_data", "null")  # fmt: skip
    assert other_run.wait(timeout=60) == 0
    assert f"tokenizer: another run is training {tokenizer}; waiting for it, to use the same one" in result.stdout
    assert "does not exist yet" not in result.stdout, result.stdout[-2000:]
    assert (tokenizer / "tokenizer.json").read_bytes() == (tiny_tokenizer / "tokenizer.json").read_bytes()
    exported = json.loads((tmp_path / "second" / "model" / "config.json").read_text())
    assert exported["vocab_size"] == load_tokenizer(str(tiny_tokenizer)).vocab_size  # the other run's, not 768


def test_tokenizer_vocab_size_without_a_tokenizer_directory_is_refused():
    from gpt_scratch.train_config import build_config

    with pytest.raises(ValueError, match=r"tokenizer_vocab_size \(2048\) trains .* but tokenizer is gpt2"):
        build_config({"tokenizer_vocab_size": 2048})


# --- bad input: one line, before step 1, nothing written ---


def test_train_with_a_missing_tokenizer_directory_fails_before_writing(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(run_dir, "--data", "python-stdlib", "--tokenizer", str(tmp_path / "nope"), check=False)
    assert result.returncode != 0
    assert f"tokenizer directory {tmp_path / 'nope'} does not exist" in result.stderr
    assert "python -m gpt_scratch.tokenizer train" in result.stderr and "Traceback" not in result.stderr
    assert not run_dir.exists()


def test_train_with_a_directory_lacking_its_files_fails_before_writing(trained, tmp_path):
    out, _ = trained
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "tokenizer.json").write_text((out / "tokenizer.json").read_text())
    run_dir = tmp_path / "run"
    result = run_train(run_dir, "--data", "python-stdlib", "--tokenizer", str(partial), check=False)
    assert result.returncode != 0 and "lacks tokenizer_config.json" in result.stderr
    assert "Traceback" not in result.stderr and not run_dir.exists()


def test_padded_vocab_smaller_than_the_tokenizer_is_refused(trained, tmp_path):
    out, _ = trained
    result = run_train(tmp_path / "run", "--tokenizer", str(out), "--padded_vocab_size", "512", check=False)
    assert "padded_vocab_size (512) must be an integer >= vocab_size (768)" in result.stderr
    assert not (tmp_path / "run").exists()


def test_eval_refuses_a_model_whose_vocab_size_disagrees_with_its_tokenizer(trained, tmp_path):
    out, _ = trained
    model = GPTScratchForCausalLM(GPTScratchConfig.from_preset("tiny", n_positions=32))  # GPT-2's 50257
    model_dir = save_model_dir(model, tmp_path / "model", load_tokenizer(str(out)).hf_tokenizer(32))
    result = run_command("eval.py", "perplexity", "--model", str(model_dir), "--device", "cpu", check=False)
    assert result.returncode != 0
    assert "vocab_size is 50257 but its tokenizer has 768 tokens" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--vocab_size", "200"], "vocab_size (200) is too small"),
        (["--vocab_size", "100000", "--max_docs", "3"], "the corpus yields only"),
        (["--vocab_size", "512", "--val_docs", "1000"], "no documents to train on"),
    ],
)
def test_tokenizer_training_bad_input_is_one_line_and_writes_nothing(corpus, tmp_path, args, message):
    out = tmp_path / "out"
    result = tokenizer_cli("--data", str(corpus), "--out", str(out), *args, check=False)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_tokenizer_training_on_an_empty_corpus_writes_nothing(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    out = tmp_path / "out"
    result = tokenizer_cli("--data", str(tmp_path / "empty.jsonl"), "--vocab_size", "512", "--out", str(out),
                           check=False)  # fmt: skip
    assert result.returncode == 1 and "is empty" in result.stderr and not out.exists()


def test_tokenizer_training_refuses_to_overwrite_a_tokenizer(trained, corpus):
    out, _ = trained
    before = (out / "tokenizer.json").read_bytes()
    result = tokenizer_cli("--data", str(corpus), "--vocab_size", "512", "--out", str(out), check=False)
    assert result.returncode == 1 and "already holds a tokenizer" in result.stderr
    assert (out / "tokenizer.json").read_bytes() == before


def test_conversions_keep_the_models_own_tokenizer(trained, trained_run, tmp_path):
    from transformers import GPT2LMHeadModel

    from gpt_scratch.convert import to_gpt2

    out, _ = trained
    ours = load_tokenizer(str(out))
    gpt2_dir = to_gpt2(trained_run / "model", tmp_path / "gpt2")
    tokenizer = AutoTokenizer.from_pretrained(gpt2_dir)
    ids = tokenizer(TEXTS[0], return_tensors="pt")["input_ids"]
    assert ids[0].tolist() == ours.encoding.encode_ordinary(TEXTS[0])
    with torch.no_grad():
        expected = GPTScratchForCausalLM.from_pretrained(trained_run / "model")(ids).logits
        assert torch.allclose(GPT2LMHeadModel.from_pretrained(gpt2_dir)(ids).logits, expected, atol=1e-5)
