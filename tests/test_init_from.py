"""train.py from a pretrained model (``init_from``): each kind of source gives the run exactly its model, measured at
step 0 against an independent reference (transformers' GPT2LMHeadModel, or the source model's own forward) on the
same validation windows; contradictions are refused in one line; a fine-tune resumes and scales as a run from
scratch does."""

import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_convert import nanogpt_checkpoint
from test_train import INTERRUPTED, final_weights, kill_after_checkpoint
from train_runs import run_command, run_train, trainer_state
from transformers import AutoModelForCausalLM, GPT2LMHeadModel

from gpt_scratch import save_model_dir
from gpt_scratch.checkpoint import checkpoint_dirs
from gpt_scratch.data import TextSource, prepare_shards, token_windows, validation_tokens
from gpt_scratch.export import checkpoint_model
from gpt_scratch.tokenizer import load_tokenizer

from conftest import make_gpt2, make_modern, ours_from

SHORT = ["--hellaswag_data", "null", "--max_steps", "2", "--checkpoint_interval", "2"]


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory) -> Path:
    """What transformers writes for a GPT-2 (GPT2LMHeadModel.save_pretrained): weights and config, no tokenizer."""
    directory = tmp_path_factory.mktemp("gpt2-format") / "gpt2"
    make_gpt2(seed=5).save_pretrained(directory)
    return directory


def validation_windows(corpus: Path, tokenizer: str) -> list[torch.Tensor]:
    """The windows train.py validates on with TINY's settings (val_docs 10, seq_len 32, micro-batch 4, 2 batches)."""
    held_out = validation_tokens(TextSource(str(corpus)), 10, load_tokenizer(tokenizer))
    return token_windows(held_out, 32, 4)[:2]


@torch.no_grad()
def mean_loss(model, windows: list[torch.Tensor]) -> float:
    """Mean next-token cross-entropy over every target, from the model's logits (no loss code of ours)."""
    model.eval()
    total, count = 0.0, 0
    for window in windows:
        logits = model(window[:, :-1]).logits.float()
        total += F.cross_entropy(logits.flatten(0, 1), window[:, 1:].flatten(), reduction="sum").item()
        count += window[:, 1:].numel()
    return total / count


def step_0_loss(run_dir: Path) -> float:
    (step, loss), *_ = trainer_state(run_dir)["history"]["val_loss"]
    assert step == 0
    return loss


def test_a_gpt2_directory_starts_the_run_at_gpt2s_loss_and_the_export_is_the_trained_model(tmp_path, corpus, gpt2_dir):
    run_dir = tmp_path / "run"
    run_train(run_dir, "--init_from", str(gpt2_dir), "--tokenizer", "gpt2", "--data", str(corpus), *SHORT,
              "--max_steps", "4", "--dropout", "0.1")  # fmt: skip
    reference = mean_loss(GPT2LMHeadModel.from_pretrained(gpt2_dir), validation_windows(corpus, "gpt2"))
    assert step_0_loss(run_dir) == pytest.approx(reference, rel=1e-5)
    trained, _, state = checkpoint_model(checkpoint_dirs(run_dir)[-1])
    assert state["step"] == 4 and state["model_config"]["resid_pdrop"] == 0.1  # the run's dropout, the source's shape
    exported = AutoModelForCausalLM.from_pretrained(run_dir / "model", trust_remote_code=True).eval()
    ids = torch.randint(0, 50257, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(exported(ids).logits, trained.eval()(ids).logits)
    card = (run_dir / "model" / "README.md").read_text()
    assert f"- started from: model directory {gpt2_dir}\n" in card
    assert f"- validation loss at the start (step 0): {step_0_loss(run_dir):.4f} nats per token" in card
    assert "base_model:" not in card  # a local start: the Hub's metadata names Hub models only


def test_every_other_kind_of_source_starts_the_run_at_its_own_loss(tmp_path, corpus, gpt2_dir, tiny_tokenizer):
    """An export of each architecture, a nanoGPT checkpoint and one of this project's checkpoints."""
    gpt2_export = save_model_dir(ours_from(make_gpt2(seed=6)), tmp_path / "gpt2-export")
    tiny = load_tokenizer(str(tiny_tokenizer))
    modern = make_modern(seed=8, vocab_size=tiny.vocab_size, bos_token_id=tiny.eot_id, eos_token_id=tiny.eot_id,
                         pad_token_id=tiny.eot_id)  # fmt: skip
    modern_export = save_model_dir(modern, tmp_path / "modern-export", tiny.hf_tokenizer(128))
    nanogpt_reference = make_gpt2(seed=7, activation_function="gelu")  # nanoGPT's MLP: exact GELU
    nanogpt = nanogpt_checkpoint(ours_from(nanogpt_reference), tmp_path / "ckpt.pt", "nanogpt")
    source_run = tmp_path / "source-run"
    run_train(source_run, "--init_from", str(gpt2_dir), "--tokenizer", "gpt2", "--data", str(corpus), *SHORT)
    checkpoint = checkpoint_dirs(source_run)[-1]
    sources = {
        "gpt2-export": (gpt2_export, make_gpt2(seed=6), "gpt2"),
        "modern-export": (modern_export, modern, str(tiny_tokenizer)),
        "nanogpt": (nanogpt, nanogpt_reference, "gpt2"),
        # The checkpoint's weights, as GPT-2 (transformers' forward) from the run's export of that same step.
        "checkpoint": (checkpoint, AutoModelForCausalLM.from_pretrained(source_run / "model", trust_remote_code=True)
                       .to_gpt2(), "gpt2"),
    }  # fmt: skip
    for name, (source, reference, tokenizer) in sources.items():
        run_dir = tmp_path / name
        run_train(run_dir, "--init_from", str(source), "--tokenizer", tokenizer, "--data", str(corpus), *SHORT)
        expected = mean_loss(reference, validation_windows(corpus, tokenizer))
        assert step_0_loss(run_dir) == pytest.approx(expected, rel=1e-5), name


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--n_layer", "3", "--tokenizer", "gpt2"], "init_from {gpt2} sets the model's architecture, and the config "
         "contradicts it (n_layer: 3 here, 2 in the source); remove those keys"),
        (["--position_embedding_type", "rope", "--tokenizer", "gpt2"], "(position_embedding_type: 'rope' here, "
         "'absolute' in the source)"),
        (["--seq_len", "256", "--tokens_per_step", "1024", "--tokenizer", "gpt2"],
         "seq_len (256) exceeds init_from {gpt2}'s context (n_positions 128)"),
        ([], "tokenizer {tiny} encodes text differently from init_from {gpt2}'s (GPT-2 BPE): the model's embeddings "
         "are for the source's ids. Remove tokenizer: to use the source's"),
    ],
)  # fmt: skip
def test_a_config_that_contradicts_the_source_is_refused_before_step_1(
    tmp_path, corpus, gpt2_dir, tiny_tokenizer, arguments, message
):
    result = run_train(tmp_path / "run", "--init_from", str(gpt2_dir), "--data", str(corpus), *SHORT, *arguments,
                       check=False)  # fmt: skip
    line = message.format(gpt2=gpt2_dir, tiny=tiny_tokenizer)
    assert result.returncode == 1 and "step " not in result.stdout, result.stdout[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and line in result.stderr, result.stderr[-2000:]
    assert not checkpoint_dirs(tmp_path / "run")


def test_sources_that_are_not_there_are_named(tmp_path, corpus):
    for source, message in (
        (str(tmp_path / "no-such-model"), f"model directory not found: {tmp_path / 'no-such-model'}"),
        ("nobody/no-such-model", "init_from nobody/no-such-model: could not get it from the Hugging Face Hub or its "
         "cache"),
    ):  # fmt: skip
        result = run_train(tmp_path / "run", "--init_from", source, "--data", str(corpus), *SHORT, check=False,
                           env={"HF_HUB_OFFLINE": "1"})  # fmt: skip
        assert result.returncode == 1 and message in result.stderr, result.stderr[-2000:]
    assert "set 'HF_HUB_OFFLINE=0' as environment variable.)" in result.stderr  # whole, not cut mid-sentence


def test_a_hub_id_is_read_through_the_hugging_face_cache_and_named_as_the_cards_base_model(tmp_path, corpus, gpt2_dir):
    """A Hub model as a user's cache holds it after the first download (models--OWNER--NAME/snapshots/REVISION), read
    offline by huggingface_hub itself in a fresh process (its cache location is read when it is imported)."""
    snapshot = tmp_path / "hub" / "models--someone--tiny-gpt2" / "snapshots" / ("0" * 40)
    shutil.copytree(gpt2_dir, snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    run_train(tmp_path / "run", "--init_from", "someone/tiny-gpt2", "--tokenizer", "gpt2", "--data", str(corpus),
              *SHORT, env=env, fresh_process=True)  # fmt: skip
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "base_model: someone/tiny-gpt2\nbase_model_relation: finetune\n---" in card, card
    assert "- started from: someone/tiny-gpt2 (the Hugging Face Hub)" in card
    reference = mean_loss(GPT2LMHeadModel.from_pretrained(gpt2_dir), validation_windows(corpus, "gpt2"))
    assert step_0_loss(tmp_path / "run") == pytest.approx(reference, rel=1e-5)


def test_a_fine_tune_resumes_after_kill_9_bitwise_and_two_processes_train_it_like_one(tmp_path, corpus, gpt2_dir):
    """On token shards (one global order for any number of processes), as the runs from scratch are compared."""
    shards = tmp_path / "shards"
    prepare_shards(TextSource(str(corpus)), shards, 3000, load_tokenizer("gpt2"))
    args = ["--data", str(corpus), "--token_shards", str(shards), "--init_from", str(gpt2_dir), "--tokenizer", "gpt2",
            *INTERRUPTED]  # fmt: skip
    run_train(tmp_path / "straight", *args)
    killed = tmp_path / "killed"
    kill_after_checkpoint(killed, args, 1, "step-000008")
    assert checkpoint_dirs(killed)[-1].name != "step-000024"
    result = run_train(killed, *args, "--resume", "auto")
    assert "resumed from" in result.stdout
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(killed)
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)  # bitwise
    run_train(tmp_path / "two", *args, nproc=2)
    # Gradients differ in fp32 summation order only (tests/test_train.py's two-process test says how much that moves).
    for name, tensor in final_weights(tmp_path / "two").items():
        torch.testing.assert_close(tensor, straight[name], rtol=1e-3, atol=1e-4, msg=name)


def test_export_best_exports_the_evaluation_with_the_lowest_validation_loss(tmp_path, corpus, gpt2_dir):
    """A learning rate that overfits a tiny corpus quickly: the lowest validation loss comes before the last step,
    and the export holds that evaluation's weights (the model scores that loss again), not the last step's."""
    run_dir = tmp_path / "run"
    run_train(run_dir, "--init_from", str(gpt2_dir), "--tokenizer", "gpt2", "--data", str(corpus), "--hellaswag_data",
              "null", "--max_steps", "12", "--eval_interval", "2", "--checkpoint_interval", "12", "--lr", "0.2",
              "--min_lr", "0.2", "--warmup_steps", "0", "--export_best", "true")  # fmt: skip
    curve = trainer_state(run_dir)["history"]["val_loss"]
    best_step, best_loss = min(curve, key=lambda point: point[1])
    assert best_step != 12, curve  # the settings above must overfit for the test to mean anything
    exported = AutoModelForCausalLM.from_pretrained(run_dir / "model", trust_remote_code=True)
    assert mean_loss(exported, validation_windows(corpus, "gpt2")) == pytest.approx(best_loss, rel=1e-5)
    assert (
        f"- weights: those of step {best_step}, the lowest validation loss"
        in (run_dir / "model" / "README.md").read_text()
    )


class _RunsCode:
    def __reduce__(self):
        return (exec, ("raise SystemExit('the pickle ran its code')",))


def test_damaged_and_hostile_weights_are_one_line_naming_the_file_for_init_from_and_eval_py(
    tmp_path, gpt2_dir, benchmark_task_data
):
    """What a truncated download, a config edited by hand, a pickle that holds code or a folder without weights gave:
    safetensors' and json's tracebacks, and torch's refusal ending in the advice to retry with weights_only=False."""
    weights = (gpt2_dir / "model.safetensors").read_bytes()
    cases = {
        "truncated": ("model.safetensors", weights[: len(weights) // 2], "model.safetensors is damaged"),
        "bad-header": ("model.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + weights[24:],
                       "model.safetensors is damaged"),
        "bad-config": ("config.json", b'{\n  "model_type": "gpt2",\n}\n', "config.json is not valid JSON (Expecting"),
        "no-weights": ("model.safetensors", None, "has no weights (none of model.safetensors"),
        "pickled-code": ("pytorch_model.bin", None, "pytorch_model.bin holds objects that are not weights "
                         "(builtins.exec): loading it could run code, so it is not loaded"),
    }  # fmt: skip
    for name, (file, content, message) in cases.items():
        directory = tmp_path / name
        shutil.copytree(gpt2_dir, directory)
        if content is None:
            (directory / "model.safetensors").unlink()
        else:
            (directory / file).write_bytes(content)
        if name == "pickled-code":
            torch.save({"transformer.wte.weight": torch.zeros(2), "hook": _RunsCode()}, directory / file)
        for result in (
            run_train(tmp_path / "run", "--init_from", str(directory), *SHORT, check=False),
            run_command("eval.py", "perplexity", "--model", str(directory), "--data", "x.txt", check=False),
            run_command("eval.py", "tasks", "--model", str(directory), "--tasks", "copa", "--data",
                        f"copa={benchmark_task_data['copa']}", check=False),
        ):  # fmt: skip
            printed = result.stdout + result.stderr
            assert result.returncode == 1 and "Traceback" not in printed and "ran its code" not in printed, printed
            assert result.stderr.count("\n") == 1 and message in result.stderr, (name, result.stderr)
            assert str(directory) in result.stderr and "weights_only=False" not in printed
    readme = tmp_path / "README.md"
    readme.write_text("# notes\n")
    result = run_train(tmp_path / "run", "--init_from", str(readme), *SHORT, check=False)
    assert f"error: init_from {readme}: {readme} is not a PyTorch checkpoint file" in result.stderr, result.stderr
    assert "init_from takes gpt2 ... gpt2-xl or a Hub id, a model directory, a nanoGPT .pt checkpoint" in result.stderr
    assert not checkpoint_dirs(tmp_path / "run")


def test_a_fine_tune_resumes_from_its_checkpoint_alone_with_the_source_gone_and_offline(
    tmp_path, corpus, tiny_tokenizer
):
    """Resume used to reload init_from's source only to overwrite its weights: a requeued job on a fresh offline
    node, or after the source moved, failed. The checkpoint records the architecture and where the run started (the
    card still names it), and the run keeps the source's own tokenizer; the export of a checkpoint by ``python -m
    gpt_scratch.export`` says the same."""
    tiny = load_tokenizer(str(tiny_tokenizer))
    model = make_modern(seed=3, vocab_size=tiny.vocab_size, bos_token_id=tiny.eot_id, eos_token_id=tiny.eot_id,
                        pad_token_id=tiny.eot_id)  # fmt: skip
    source = save_model_dir(model, tmp_path / "source", tiny.hf_tokenizer(128))
    # A constant learning rate after warmup: steps 1-6 of a 6-step run are those of a run stopped at 3 and resumed.
    args = ["--init_from", str(source), "--data", str(corpus), "--hellaswag_data", "null", "--checkpoint_interval",
            "3", "--min_lr", "3e-3", "--warmup_steps", "1", "--tokenizer", "null"]  # fmt: skip
    loaded = run_train(tmp_path / "straight", *args, "--max_steps", "6")
    run_train(tmp_path / "resumed", *args, "--max_steps", "3")
    shutil.rmtree(source)
    resumed = run_train(tmp_path / "resumed", *args, "--max_steps", "6", "--resume", "auto",
                        env={"HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert "resumed from" in resumed.stdout
    # A log that is not a terminal (here, captured): lines of the run only, each on its own line; no bar of
    # transformers' loading or saving, no progress bar for the evaluation lines to be glued to.
    printed = loaded.stdout + loaded.stderr + resumed.stdout + resumed.stderr
    assert "model: model directory" in printed and "exported" in printed  # it did load and save
    assert "Writing model shards" not in printed and "Loading weights" not in printed and "training:" not in printed
    assert all(line.startswith("eval step") for line in printed.splitlines() if "eval step" in line), printed
    straight, again = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert all(torch.equal(straight[name], again[name]) for name in straight)  # bitwise
    card = (tmp_path / "resumed" / "model" / "README.md").read_text()
    assert f"- started from: model directory {source}" in card, card
    exported = tmp_path / "exported"
    run_command("-m gpt_scratch.export", str(checkpoint_dirs(tmp_path / "resumed")[-1]), str(exported))
    assert f"- started from: model directory {source}" in (exported / "README.md").read_text()


def test_an_explicit_gpt2_tokenizer_that_contradicts_the_source_is_refused(tmp_path, corpus, tiny_tokenizer):
    """tokenizer: gpt2 was the default and could not be told from it: with a source of its own tokenizer it silently
    became the source's. The default is now unset; gpt2 given is checked like any other tokenizer."""
    tiny = load_tokenizer(str(tiny_tokenizer))
    model = make_modern(vocab_size=tiny.vocab_size, bos_token_id=tiny.eot_id, eos_token_id=tiny.eot_id,
                        pad_token_id=tiny.eot_id)  # fmt: skip
    own = save_model_dir(model, tmp_path / "own", tiny.hf_tokenizer(128))
    result = run_train(tmp_path / "run", "--init_from", str(own), "--data", str(corpus), *SHORT, "--tokenizer", "gpt2",
                       check=False)  # fmt: skip
    assert result.returncode == 1 and "error: tokenizer gpt2 encodes text differently from init_from" in result.stderr
    assert not checkpoint_dirs(tmp_path / "run")
