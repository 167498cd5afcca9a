"""The benchmark tasks: the same prompts, log-likelihoods and metrics as lm-evaluation-harness's tasks of the same
names, zero-shot and few-shot, on made-up items in each task's schema (tests/task_data.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_runs import free_port, run_command, run_train, trainer_state
from transformers import AutoModelForCausalLM, AutoTokenizer

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM, save_model_dir
from gpt_scratch.tasks import TASKS, evaluate_tasks
from gpt_scratch.tokenizer import gpt2_tokenizer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(GPTScratchConfig.from_preset("tiny", n_positions=48))  # short: truncation runs
    return save_model_dir(model, tmp_path_factory.mktemp("tasks") / "model")


@pytest.fixture(scope="module")
def model(model_dir):
    return GPTScratchForCausalLM.from_pretrained(model_dir).eval()


@pytest.fixture(scope="module")
def task_data(benchmark_task_data) -> dict[str, str]:
    return benchmark_task_data


def lm_eval_results(model_dir, task_manager, num_fewshot: int) -> dict:
    import lm_eval

    return lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={model_dir},trust_remote_code=True,dtype=float32",
        tasks=[f"{name}_items" for name in TASKS], task_manager=task_manager, num_fewshot=num_fewshot,
        log_samples=True, batch_size=16, device="cpu",
    )  # fmt: skip


def request_pairs(sample: dict) -> list[tuple[str, str]]:
    return [tuple(arguments) for arguments in sample["arguments"]]


@pytest.mark.parametrize("num_fewshot", [0, 3])
def test_every_task_equals_lm_eval(model_dir, model, lm_eval_tasks, task_data, num_fewshot):
    reference = lm_eval_results(model_dir, lm_eval_tasks, num_fewshot)
    ours = evaluate_tasks(model, gpt2_tokenizer(), list(TASKS), task_data, num_fewshot, batch_size=16,
                          return_details=True)  # fmt: skip
    for name, task in TASKS.items():
        samples = sorted(reference["samples"][f"{name}_items"], key=lambda sample: sample["doc_id"])
        details = ours[name]["details"]
        assert len(samples) == len(details) == ours[name]["n"] == 10, name
        for sample, detail in zip(samples, details):
            assert list(detail["requests"]) == request_pairs(sample), (name, sample["doc_id"])
            expected = [loglik for loglik, _ in sample["filtered_resps"]]
            assert detail["logliks"] == pytest.approx(expected, abs=1e-4), (name, sample["doc_id"])
        metrics = reference["results"][f"{name}_items"]
        for metric in task.metrics:
            if metric == "perplexity":
                assert ours[name][metric] == pytest.approx(metrics[f"{metric},none"], rel=1e-4), name
            else:
                assert ours[name][metric] == metrics[f"{metric},none"], (name, metric)
                assert ours[name][f"{metric}_stderr"] == pytest.approx(metrics[f"{metric}_stderr,none"]), name


def test_two_processes_equal_one(tmp_path, model_dir, model, task_data):
    out = tmp_path / "result.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port(),
               str(ROOT / "tests" / "dist_eval_worker.py"), "tasks", str(model_dir), json.dumps(task_data), str(out),
               "7", "3"]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    single = evaluate_tasks(model, gpt2_tokenizer(), list(task_data), task_data, 3, 7, batch_size=5)
    distributed = json.loads(out.read_text())
    assert distributed.keys() == single.keys()
    for name in single:
        assert distributed[name] == pytest.approx(single[name], nan_ok=True), name
    assert all(single[name]["n"] == 7 for name in TASKS)  # an odd count: the uneven split is padded, then dropped


def test_cli_writes_the_json_and_table_of_the_library_and_the_centered_aggregate(tmp_path, model_dir, task_data):
    out = tmp_path / "results.json"
    data = [argument for name, path in task_data.items() for argument in ("--data", f"{name}={path}")]
    result = run_command("eval.py", "tasks", "--model", str(model_dir), "--tasks", "small_model_suite", *data,
                         "--limit", "4", "--output", str(out))  # fmt: skip
    written = json.loads(out.read_text())
    model = GPTScratchForCausalLM.from_pretrained(model_dir).eval()
    library = evaluate_tasks(model, gpt2_tokenizer(), list(TASKS), task_data, limit=4)
    assert written.keys() == library.keys()
    for name in library:
        assert written[name] == pytest.approx(library[name], nan_ok=True), name
    assert set(written) == {*TASKS, "aggregate"} and written["lambada_openai"].keys() == {
        "acc",
        "acc_stderr",
        "perplexity",
        "n",
    }
    chances = {
        "hellaswag": 4,
        "arc_easy": 4,
        "arc_challenge": 4,
        "piqa": 2,
        "winogrande": 2,
        "openbookqa": 4,
        "lambada_openai": None,
        "boolq": 2,
        "copa": 2,
        "sciq": 4,
    }  # choices a uniform guess picks among
    centered = [(written[n]["acc"] - (1 / k if k else 0)) / (1 - (1 / k if k else 0)) for n, k in chances.items()]
    assert written["aggregate"]["centered_acc"] == pytest.approx(sum(centered) / len(centered))
    for name in TASKS:
        assert any(line.split()[:2] == [name, "acc"] for line in result.stdout.splitlines()), name


def test_the_suite_scores_the_tasks_it_can_load_and_names_each_other_in_one_line(tmp_path, model_dir, task_data):
    # Offline, piqa has local data and an output directory; arc_easy and copa would read the Hub.
    piqa = f"piqa={task_data['piqa']}"
    result = run_command("eval.py", "tasks", "--model", str(model_dir), "--tasks", "arc_easy,piqa,copa", "--data", piqa,
                         "--limit", "4", "--output", str(tmp_path), check=False)  # fmt: skip
    model = GPTScratchForCausalLM.from_pretrained(model_dir).eval()
    library = evaluate_tasks(model, gpt2_tokenizer(), ["piqa"], task_data, limit=4)
    assert json.loads((tmp_path / "results.json").read_text())["piqa"] == pytest.approx(library["piqa"])
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no stray temporary file beside it
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == (  # after the progress bars
        "error: scored 1 of 3 tasks; could not load 2: arc_easy: the Hub's allenai/ai2_arc could not be reached | "
        "copa: the Hub's aps/super_glue could not be reached. Give each its data with --data TASK=PATH (a file in its "
        "schema, or a directory of split files: docs/evaluation.md)"
    ), result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--tasks", "arc_easy,mmlu"], "unknown task 'mmlu'; known tasks and groups: hellaswag, arc_easy"),
        (["--tasks", "arc_easy", "--data", "arc_easy"], "--data 'arc_easy' must be TASK=PATH"),
        (["--tasks", "arc_easy"], "error: scored 0 of 1 tasks; could not load 1: arc_easy: the Hub's allenai/ai2_arc "
         "could not be reached. Give each its data with --data TASK=PATH"),
        (["--tasks", "arc_easy", "--limit", "-1"], "argument --limit: -1 is not a positive number"),
        (["--tasks", "copa", "--num_fewshot", "6", "--data", "copa={copa}"], "copa: --num_fewshot 6 needs 7 examples "
         "from its train split (lm-eval draws 7), which holds 6"),
        (["--tasks", "piqa", "--num_fewshot", "1", "--data", "piqa={piqa}/validation.jsonl"], "piqa: "
         "{piqa}/validation.jsonl is one file, its validation split; few-shot examples come from its train split"),
        (["--tasks", "winogrande", "--data", "winogrande={bad}"], "{bad}:2: field 'sentence' has no '_' blank"),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_line(tmp_path, model_dir, task_data, arguments, message):
    bad = tmp_path / "bad.jsonl"
    good = {"sentence": "The cup broke because _ fell.", "option1": "it", "option2": "he", "answer": "1"}
    bad.write_text(json.dumps(good) + "\n" + json.dumps({**good, "sentence": "No blank here."}) + "\n")
    places = {"bad": str(bad), **task_data}
    arguments = [argument.format(**places) for argument in arguments]
    result = run_command("eval.py", "tasks", "--model", str(model_dir), *arguments, check=False)
    assert result.returncode != 0
    assert message.format(**places) in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_a_context_longer_than_the_model_is_cut_on_the_left_with_a_warning(model, task_data):
    with pytest.warns(UserWarning, match=r"requests are longer than the model's context \(48 tokens\)"):
        evaluate_tasks(model, gpt2_tokenizer(), ["sciq"], task_data, num_fewshot=3, limit=2)


def test_a_training_run_scores_its_tasks_at_every_evaluation(tmp_path, corpus, task_data):
    """Curves in the history, the log, TensorBoard and loss.png; the final scores in the model card's table: each the
    scores of the exported model (tokenizer included) by evaluate_tasks."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, names = tmp_path / "run", ["arc_easy", "winogrande", "lambada_openai"]
    data = json.dumps({name: task_data[name] for name in [*names, "hellaswag"]})
    options = ["--max_steps", "4", "--eval_interval", "2", "--tokens_per_step", "128", "--checkpoint_interval", "1000",
               "--eval_tasks", ",".join(names), "--eval_task_data", data, "--eval_task_limit", "5", "--hellaswag_limit",
               "6", "--report_to", "tensorboard"]  # fmt: skip
    result = run_train(run_dir, "--data", str(corpus), *options)
    exported = AutoModelForCausalLM.from_pretrained(run_dir / "model", trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")
    limits = {"hellaswag": 6, **dict.fromkeys(names, 5)}
    expected = evaluate_tasks(exported, tokenizer, ["hellaswag", *names], json.loads(data), limit=limits)

    curves = trainer_state(run_dir)["history"]["tasks"]
    assert list(curves) == ["hellaswag", *names]
    for name, points in curves.items():
        headline = "acc_norm" if "acc_norm" in expected[name] else "acc"
        assert [step for step, _ in points] == [0, 2, 4]  # before the first step too
        assert points[-1][1] == pytest.approx(expected[name][headline]), name
        assert f"| {name} {headline} {expected[name][headline]:.4f}" in result.stdout
    assert f"| centered acc {expected['aggregate']['centered_acc']:.4f}" in result.stdout

    events = EventAccumulator(str(next(run_dir.rglob("events.out.tfevents.*")).parent)).Reload()
    for name in names:
        for metric in ("acc", "acc_stderr", "n"):
            (*_, last) = events.Scalars(f"eval/{name}/{metric}")
            assert (last.step, last.value) == (4, pytest.approx(expected[name][metric], rel=1e-6)), (name, metric)
    card = (run_dir / "model" / "README.md").read_text()
    assert f"| lambada_openai | perplexity | {expected['lambada_openai']['perplexity']:.4f} |" in card
    assert f"| winogrande | acc | {expected['winogrande']['acc']:.4f} | " in card
    assert (run_dir / "loss.png").stat().st_size > 0


def test_a_context_shared_by_its_choices_runs_once(model):
    """Four choices of one item: the context's tokens go through the model once, and the scores are those of each
    choice run as a whole sequence."""
    from gpt_scratch.loglikelihood import _logliks_in_full, continuation_logliks, encode_pairs

    context = "Question: which of these grows from a seed, given water, light and a warm place?\nAnswer:"
    requests = encode_pairs(gpt2_tokenizer(), [(context, f" {choice}") for choice in ("a tree", "a stone", "iron")])
    seen = []
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: seen.append(kwargs["input_ids"].numel()),
                                           with_kwargs=True)  # fmt: skip
    try:
        shared = continuation_logliks(model, requests, batch_size=8)
    finally:
        hook.remove()
    context_tokens = len(requests[0][0])
    assert sum(seen) < context_tokens + sum(len(continuation) for _, continuation in requests) + 2 * len(requests)
    whole = _logliks_in_full(model, requests, batch_size=8)
    assert [loglik for loglik, _, _ in shared] == pytest.approx([loglik for loglik, _, _ in whole], abs=1e-5)


def test_a_training_run_whose_task_data_cannot_be_read_stops_before_step_1(tmp_path, corpus):
    result = run_train(
        tmp_path / "run", "--data", str(corpus), "--eval_tasks", "piqa", "--max_steps", "50", check=False
    )
    assert result.returncode != 0 and "step " not in result.stdout
    assert "piqa: could not reach the Hugging Face Hub for 'baber/piqa'" in result.stderr
    assert "eval_task_data: {piqa: PATH}" in result.stderr and "Traceback" not in result.stderr
