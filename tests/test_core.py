"""CORE: every item scored as nanochat scores it, checked against an independent computation (prompts by plain
string joins here, tokens by tiktoken, losses by transformers' GPT-2 on the same weights), on a bundle made here in
the real layout."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from train_runs import ROOT, free_port, run_command, run_train, trainer_state, write_train_corpus
from transformers import GPT2Config, GPT2LMHeadModel

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
from gpt_scratch.modeling_gpt_scratch import state_dict_to_gpt2
from gpt_scratch.tasks.core import evaluate_core
from gpt_scratch.tokenizer import EOT_ID, gpt2_encoding, gpt2_tokenizer

WORDS = [
    "the",
    "a",
    "river",
    "stone",
    "cloud",
    "apple",
    "pear",
    "green",
    "small",
    "quick",
    "slow",
    "bright",
    "cold",
    "runs",
    "falls",
    "sings",
]
N_POSITIONS = 64  # an item below is longer: it is cut on the left
# label, type, few-shot, delimiter, random baseline (%)
TASKS = [("mc_zero", "multiple_choice", 0, " ", 25.0), ("mc_three", "multiple_choice", 3, "\nAnswer: ", 25.0),
         ("schema_two", "schema", 2, " ", 50.0), ("lm_zero", "language_modeling", 0, " ", 0.0),
         ("lm_one", "language_modeling", 1, ": ", 0.0)]  # fmt: skip


def say(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def rows_of(task_type: str, count: int, rng: random.Random) -> list[dict]:
    rows = []
    for index in range(count):
        if task_type == "multiple_choice":
            query = say(rng, 60, 70) if index == 0 else say(rng, 3, 9)  # the first is longer than the context
            rows.append({"query": query, "choices": [say(rng, 1, 3) for _ in range(4)], "gold": rng.randrange(4)})
        elif task_type == "schema":
            rows.append({"context_options": [say(rng, 2, 6) for _ in range(2)], "continuation": say(rng, 1, 4),
                         "gold": rng.randrange(2)})  # fmt: skip
        else:  # contexts with trailing whitespace, which the templates trim
            rows.append({"context": say(rng, 3, 8) + rng.choice(["", " ", "  \n"]), "continuation": say(rng, 1, 2)})
    return rows


def write_bundle(directory: Path, rows_per_task: int = 14) -> dict[str, list[dict]]:
    rng = random.Random(0)
    (directory / "eval_data").mkdir(parents=True)
    icl_tasks, data = [], {}
    for label, task_type, fewshot, delimiter, _ in TASKS:
        data[label] = rows_of(task_type, rows_per_task, rng)
        (directory / "eval_data" / f"{label}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data[label]))
        icl_tasks.append({"label": label, "icl_task_type": task_type, "dataset_uri": f"{label}.jsonl",
                          "num_fewshot": [fewshot], "continuation_delimiter": delimiter})  # fmt: skip
    (directory / "core.yaml").write_text(yaml.safe_dump({"icl_tasks": icl_tasks}))
    (directory / "eval_meta_data.csv").write_text(
        "Eval Task,Task Category,Task Type,#shot,Random baseline\n"
        + "".join(f"{label},x,x,{fewshot},{baseline}\n" for label, _, fewshot, _, baseline in TASKS)
    )
    return data


def reference(model: GPT2LMHeadModel, label: str, task_type: str, fewshot: int, delimiter: str, rows: list[dict],
              keep: int | None = None) -> tuple[list[bool], list[list[float]]]:  # fmt: skip
    """Each item's correctness and options' mean losses, computed from the rule alone (``keep``: the first N after
    the shuffle, the few-shot examples drawn from those)."""
    rows = list(rows)
    random.Random(1337).shuffle(rows)
    rows = rows[:keep] if keep else rows
    encoding, correct, losses = gpt2_encoding(), [], []
    for index, item in enumerate(rows):
        shots = [rows[i] for i in random.Random(1234 + index).sample([i for i in range(len(rows)) if i != index],
                                                                       fewshot)] if fewshot else []  # fmt: skip
        if task_type == "multiple_choice":
            head = "".join(s["query"] + delimiter + s["choices"][s["gold"]] + "\n\n" for s in shots)
            texts = [head + item["query"] + delimiter + choice for choice in item["choices"]]
        elif task_type == "schema":
            head = "".join(s["context_options"][s["gold"]] + delimiter + s["continuation"] + "\n\n" for s in shots)
            texts = [head + option + delimiter + item["continuation"] for option in item["context_options"]]
        else:
            head = "".join(s["context"].strip() + delimiter + s["continuation"] + "\n\n" for s in shots)
            texts = [(head + item["context"].strip() + delimiter).strip(),
                     head + item["context"].strip() + delimiter + item["continuation"]]  # fmt: skip
        tokens = [[EOT_ID, *encoding.encode(text)] for text in texts]
        if task_type == "multiple_choice":
            start = 0
            while all(len(t) > start and t[start] == tokens[0][start] for t in tokens):
                start += 1
            spans = [(start, len(t)) for t in tokens]
        elif task_type == "schema":
            common = 0
            while all(len(t) > common and t[-1 - common] == tokens[0][-1 - common] for t in tokens):
                common += 1
            spans = [(len(t) - common, len(t)) for t in tokens]
        else:
            spans, tokens = [(len(tokens[0]), len(tokens[1]))], [tokens[1]]
        item_losses, greedy = [], True
        for sequence, (start, end) in zip(tokens, spans):
            crop = max(0, len(sequence) - N_POSITIONS)
            sequence, start, end = sequence[crop:], start - crop, end - crop
            with torch.no_grad():
                logits = model(torch.tensor([sequence])).logits[0]
            targets = torch.tensor(sequence[start:end])
            item_losses.append(torch.nn.functional.cross_entropy(logits[start - 1 : end - 1], targets).item())
            greedy = bool((logits[start - 1 : end - 1].argmax(-1) == targets).all())
        losses.append(item_losses)
        if task_type == "language_modeling":
            correct.append(greedy)
        else:
            correct.append(item_losses.index(min(item_losses)) == item["gold"])
    return correct, losses


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    config = GPTScratchConfig.from_preset("tiny", vocab_size=50257, n_positions=N_POSITIONS)
    ours = GPTScratchForCausalLM(config).eval()
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=N_POSITIONS, n_embd=config.n_embd,
                                      n_layer=config.n_layer, n_head=config.n_head)).eval()  # fmt: skip
    gpt2.load_state_dict(state_dict_to_gpt2(ours.state_dict()), strict=False)
    return ours, gpt2


def test_every_items_correctness_and_losses_equal_the_rule_computed_independently(tmp_path, models):
    """Multiple choice (0- and 3-shot, a delimiter that is not a space), schema (2-shot), language modelling (0- and
    1-shot, contexts with trailing whitespace), an item longer than the context: each item's options' mean losses and
    its correctness equal the rule's on transformers' GPT-2 with the same weights; the centred accuracies and CORE
    are the test's own arithmetic."""
    ours, gpt2 = models
    data = write_bundle(tmp_path / "bundle")
    result = evaluate_core(ours, gpt2_tokenizer(), tmp_path / "bundle", batch_size=8)
    centred = []
    for label, task_type, fewshot, delimiter, baseline in TASKS:
        correct, losses = reference(gpt2, label, task_type, fewshot, delimiter, data[label])
        assert result["correct"][label] == [float(c) for c in correct], label
        torch.testing.assert_close(torch.tensor(result["losses"][label]), torch.tensor(losses), rtol=1e-4, atol=1e-4)
        accuracy = sum(correct) / len(correct)
        assert result["tasks"][label]["acc"] == pytest.approx(accuracy)
        centred.append((accuracy - baseline / 100) / (1 - baseline / 100))
        assert result["tasks"][label]["centered"] == pytest.approx(centred[-1])
    assert result["core"] == pytest.approx(sum(centred) / len(centred))
    assert 0 < sum(sum(c) for c in result["correct"].values()) < sum(map(len, result["correct"].values()))


def test_max_per_task_keeps_the_first_n_shuffled_items_and_draws_their_few_shot_examples_among_them(tmp_path, models):
    ours, gpt2 = models
    data = write_bundle(tmp_path / "bundle")
    result = evaluate_core(ours, gpt2_tokenizer(), tmp_path / "bundle", labels=["mc_three"], max_per_task=5)
    correct, losses = reference(gpt2, "mc_three", "multiple_choice", 3, "\nAnswer: ", data["mc_three"], keep=5)
    assert list(result["tasks"]) == ["mc_three"] and result["tasks"]["mc_three"]["n"] == 5
    assert result["correct"]["mc_three"] == [float(c) for c in correct]
    torch.testing.assert_close(torch.tensor(result["losses"]["mc_three"]), torch.tensor(losses), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: (d / "core.yaml").unlink(), "is not a CORE eval bundle: it has no core.yaml"),
        (lambda d: (d / "eval_data" / "lm_one.jsonl").unlink(), "lm_one.jsonl is missing: lm_one's rows"),
        (lambda d: (d / "eval_data" / "mc_zero.jsonl").write_text('{"query": "q", "gold": 0}\n'),
         "mc_zero.jsonl, row 1: a multiple_choice row needs choices"),
        (lambda d: (d / "eval_data" / "schema_two.jsonl").write_text(""), "schema_two.jsonl is empty"),
        (lambda d: (d / "core.yaml").write_text((d / "core.yaml").read_text().replace("schema\n", "ranking\n")),
         "schema_two's icl_task_type 'ranking' is not one CORE scores"),
    ],
)  # fmt: skip
def test_a_damaged_bundle_is_one_error_naming_the_file(tmp_path, models, change, message):
    write_bundle(tmp_path / "bundle")
    change(tmp_path / "bundle")
    with pytest.raises((ValueError, FileNotFoundError), match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate_core(models[0], gpt2_tokenizer(), tmp_path / "bundle")


def test_core_during_training_equals_eval_py_on_the_exported_model_and_two_processes_equal_one(tmp_path):
    """``eval_tasks: [core]`` scores CORE at each evaluation (the log, the history's curve, the card's table); the
    exported model scored by ``eval.py tasks --tasks core`` gives the same CORE; two processes give one's."""
    write_bundle(tmp_path / "bundle", rows_per_task=8)
    run_dir = tmp_path / "run"
    (tmp_path / "corpus").mkdir()
    result = run_train(run_dir, "--data", str(write_train_corpus(tmp_path / "corpus")), "--max_steps", "2",
                       "--eval_interval", "2", "--eval_tasks", "[core]", "--eval_task_data",
                       json.dumps({"core": str(tmp_path / "bundle")}), "--eval_task_limit", "6",
                       "--hellaswag_data", "null")  # fmt: skip
    trained = dict(trainer_state(run_dir)["history"]["tasks"]["core"])[2]
    assert f"CORE {trained:.4f}" in result.stdout
    card = (run_dir / "model" / "README.md").read_text()
    assert "## CORE" in card and f"| **CORE** | | **{trained:.4f}** | |" in card and "0.256525" in card
    out = tmp_path / "results.json"
    run_command("eval.py", "tasks", "--model", str(run_dir / "model"), "--tasks", "core", "--data",
                f"core={tmp_path / 'bundle'}", "--limit", "6", "--output", str(out))  # fmt: skip
    single = json.loads(out.read_text())["core"]
    assert single["core"] == pytest.approx(trained, abs=1e-9)
    assert all(task["n"] == 6 for task in single["tasks"].values())
    two = tmp_path / "two.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port(),
               str(ROOT / "tests" / "dist_eval_worker.py"), "core", str(run_dir / "model"), str(tmp_path / "bundle"),
               str(two), "6"]  # fmt: skip
    launched = subprocess.run(command, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-3000:]
    distributed = json.loads(two.read_text())
    assert distributed["core"] == pytest.approx(single["core"], abs=1e-9)
    assert distributed["tasks"] == single["tasks"]  # the same items each correct or not: the same fractions


def test_a_subset_is_scored_whatever_the_other_tasks_hold_and_a_missing_bundle_is_one_line(
    tmp_path, models, monkeypatch
):
    write_bundle(tmp_path / "bundle")
    (tmp_path / "bundle" / "eval_data" / "lm_one.jsonl").unlink()  # another task's file: not asked for
    result = evaluate_core(models[0], gpt2_tokenizer(), tmp_path / "bundle", labels=["mc_zero"], max_per_task=3)
    assert list(result["tasks"]) == ["mc_zero"]
    with pytest.raises(ValueError, match="unknown CORE task.s. nope; the bundle's: mc_zero"):
        evaluate_core(models[0], gpt2_tokenizer(), tmp_path / "bundle", labels=["nope"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nothing cached, and HF_HUB_OFFLINE=1 (conftest)
    with pytest.raises(
        FileNotFoundError,
        match="the CORE eval bundle is not cached and cannot be downloaded .HF_HUB_"
        "OFFLINE is set.; download https://karpathy-public.s3.us-west-2.amazonaws.com/eval_bundle.zip",
    ):
        evaluate_core(models[0], gpt2_tokenizer())
