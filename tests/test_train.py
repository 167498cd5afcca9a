"""train.py end to end: loss falls, export loads anywhere, multi-process equals single-process, exact resume."""

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_runs import MODERN_ARGS, ROOT, TINY, free_port, run_train, trainer_state

from gpt_scratch import reporting
from gpt_scratch.checkpoint import checkpoint_dirs, resolve_resume
from gpt_scratch.data import TextSource, prepare_shards
from gpt_scratch.reporting import early_estimate
from gpt_scratch.tokenizer import load_tokenizer
from gpt_scratch.train_config import TrainConfig, build_config, parse_args


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "model" / "model.safetensors")


# --- config -------------------------------------------------------------------------------------------------


def test_yaml_preset_and_command_line_overrides(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("lr: 1.0e-3\nmax_steps: 50\nwarmup_steps: 5\nsample_prompts: [a, b]\n")
    config = parse_args([str(preset), "--lr", "3e-4", "--max-steps=7", "--hellaswag_data", "null"])
    assert (config.lr, config.max_steps, config.sample_prompts, config.hellaswag_data) == (3e-4, 7, ["a", "b"], None)
    assert parse_args(["--mixed_precision", "no"]).mixed_precision == "no"  # YAML reads `no` as false


@pytest.mark.parametrize(
    "values, message",
    [
        ({"lrr": 1e-3}, r"unknown config key 'lrr'; did you mean 'lr'\?"),
        ({"lr": -1.0}, r"lr \(-1.0\) must be positive"),
        ({"min_lr": 1.0, "lr": 0.1}, r"min_lr \(1.0\) must be between 0 and lr \(0.1\)"),
        ({"max_steps": "ten"}, r"max_steps must be int, got 'ten'"),
        ({"mixed_precision": "fp8"}, r"mixed_precision \('fp8'\) must be one of no, bf16, fp16"),
        ({"seq_len": 0}, r"seq_len \(0\) must be positive"),
        ({"warmup_steps": 500, "max_steps": 100}, r"warmup_steps \(500\) must not exceed max_steps \(100\)"),
    ],
)
def test_bad_config_values_are_clear_errors(values, message):
    with pytest.raises(ValueError, match=message):
        build_config(values)


def test_indivisible_token_batch_is_a_clear_error():
    config = TrainConfig(tokens_per_step=1000, micro_batch_size=4, seq_len=32)
    with pytest.raises(ValueError, match=r"tokens_per_step \(1000\) is not divisible by .* \(4 \* 32 \* 2 = 256\)"):
        config.gradient_accumulation_steps(2)
    assert TrainConfig(tokens_per_step=1024, micro_batch_size=4, seq_len=32).gradient_accumulation_steps(2) == 4
    with pytest.raises(ValueError, match=r"multiple of seq_len \* processes \(384\), e\.g\. --tokens_per_step 1920"):
        TrainConfig(tokens_per_step=2048, micro_batch_size=16, seq_len=128).gradient_accumulation_steps(3)


@pytest.mark.parametrize(
    ("processes", "micro_batch", "accumulation"), [(1, 16, 1), (2, 8, 1), (4, 4, 1), (3, None, None), (16, 1, 1)]
)
def test_a_one_process_preset_fits_its_micro_batch_to_the_processes(processes, micro_batch, accumulation):
    """The quickstart's 16 x 128 = 2048 tokens a step, launched on N processes: the same tokens per step, each
    process a smaller micro-batch (memory only); what cannot split evenly keeps the error that names the flag."""
    config = TrainConfig(tokens_per_step=2048, micro_batch_size=16, seq_len=128)
    note = config.fit_micro_batch(processes)
    if micro_batch is None:
        assert note is None and config.micro_batch_size == 16
        with pytest.raises(ValueError, match="--tokens_per_step"):
            config.gradient_accumulation_steps(processes)
        return
    assert config.micro_batch_size == micro_batch and (note is None) == (micro_batch == 16)
    assert config.gradient_accumulation_steps(processes) == accumulation
    assert config.micro_batch_size * config.seq_len * processes * accumulation == 2048
    # A micro-batch larger than needed is never raised: 6 x 128 on one process makes 2048 only with 16 / 6 steps.
    odd = TrainConfig(tokens_per_step=2048, micro_batch_size=6, seq_len=128)
    odd.fit_micro_batch(1)
    assert odd.micro_batch_size == 4 and odd.gradient_accumulation_steps(1) == 4


def test_main_in_process_leaves_no_lock_or_signal_handler_behind(tmp_path, corpus):
    """train.main runs in the caller's process (tests, notebooks): when it returns, and when it fails, the run lock
    is released and the caller's SIGTERM/SIGINT handlers are back."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    args = ["--data", str(corpus), "--max_steps", "2", "--hellaswag_data", "null", "--checkpoint_interval", "2"]
    run_train(tmp_path / "run", *args)
    assert not (tmp_path / "run" / "run.lock").exists()
    assert {sig: signal.getsignal(sig) for sig in before} == before
    failed = run_train(tmp_path / "run", *args, "--lr", "1e6", "--max_steps", "8", "--resume", "auto", check=False)
    assert failed.returncode == 1 and "training stopped instead of continuing on NaN" in failed.stderr
    assert not (tmp_path / "run" / "run.lock").exists()
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_a_long_run_says_how_long_it_will_take_after_its_second_step(tmp_path, corpus, monkeypatch):
    """A run of hours (GPT-2's fine-tune on a CPU: 250 s a step, log lines every 10) says its expected time after
    step 2, before its first log line; here every run counts as long."""
    assert early_estimate(250, 198, 10) == ("a step takes 4.2 min: the 198 steps left will take about 13.8 h at this "
                                            "speed (the log line every 10 steps tells more)")  # fmt: skip
    assert early_estimate(1.5, 198, 10) is None  # five minutes: the log lines say it soon enough
    monkeypatch.setattr(reporting, "LONG_RUN_SECONDS", 0)
    result = run_train(tmp_path / "run", "--data", str(corpus), "--max_steps", "5", "--log_interval", "5",
                       "--hellaswag_data", "null")  # fmt: skip
    printed = result.stdout + result.stderr
    said = re.search(r"a step takes ([0-9.]+) s: the 3 steps left will take about ([0-9.]+) s", printed)
    assert said and abs(3 * float(said.group(1)) - float(said.group(2))) <= 2, printed[-2000:]
    assert printed.index(said.group(0)) < printed.index("step      5/5")


def test_missing_corpus_fails_with_a_clear_message(tmp_path):
    result = run_train(tmp_path / "run", "--data", str(tmp_path / "nowhere" / "corpus.txt"), check=False)
    assert result.returncode != 0
    assert "error: no such file or directory" in result.stderr and "Traceback" not in result.stderr


# --- training -----------------------------------------------------------------------------------------------


def test_debug_run_lowers_loss_and_exports_a_model_that_loads_anywhere(tmp_path, corpus):
    run_dir = tmp_path / "run"
    result = run_train(run_dir, "--data", str(corpus), "--max_steps", "40", "--tokens_per_step", "256",
                       "--checkpoint_interval", "20", "--eval_interval", "20", "--padded_vocab_size", "512",
                       "--push_to_hub", "someone/tiny-gpt")  # fmt: skip
    # The suite runs offline: the push fails, says so, and the export stays intact.
    assert "could not push to the Hub" in result.stdout and (run_dir / "model" / "model.safetensors").is_file()
    history = trainer_state(run_dir)["history"]
    losses = [loss for _, loss in history["train_loss"]]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0, losses
    # Before the first step, then every 20: each lower than the one before.
    assert [step for step, _ in history["val_loss"]] == [0, 20, 40]
    assert history["val_loss"][2][1] < history["val_loss"][1][1] < history["val_loss"][0][1]
    assert (run_dir / "loss.png").stat().st_size > 10_000 and (run_dir / "samples.txt").read_text()
    card = (run_dir / "model" / "README.md").read_text()
    assert "tokens seen: 10,240" in card and "| hellaswag | acc_norm |" in card
    assert json.loads((run_dir / "model" / "config.json").read_text())["padded_vocab_size"] == 512

    child = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'gpt_scratch': raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "tok = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "ids = tok('river', return_tensors='pt')\n"
        "out = model.generate(**ids, max_new_tokens=5, do_sample=False)\n"
        "print(out.shape[1] - ids['input_ids'].shape[1], type(model).__module__)\n"
    )
    result = subprocess.run([sys.executable, "-c", child, str(run_dir / "model")], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "HF_HOME": str(tmp_path / "hf")}, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    new_tokens, module = result.stdout.split()[-2:]
    assert new_tokens == "5" and module.startswith("transformers_modules")

    # Exporting the last checkpoint gives the very weights the run exported at its end.
    from gpt_scratch.export import export_checkpoint

    exported = export_checkpoint(checkpoint_dirs(run_dir)[-1], tmp_path / "from-checkpoint")
    final, again = final_weights(run_dir), load_file(exported / "model.safetensors")
    assert final.keys() == again.keys() and all(torch.equal(final[k], again[k]) for k in final)
    assert "tokens seen: 10,240" in (exported / "README.md").read_text()


def test_two_processes_equal_one_and_two_machines_equal_one_node_on_a_mixture_of_token_shards(tmp_path, corpus):
    # Two prepared sources by weight (gpt_scratch.data.mixture): the global batch of a step is the same for any
    # process count, so the training is (one source's shards read the same way: test_data.py).
    halves = {tmp_path / "first-half": "part[01].jsonl", tmp_path / "second-half": "part[23].jsonl"}
    tokenizer = load_tokenizer(TINY[TINY.index("--tokenizer") + 1])  # the tiny runs' own (conftest)
    for shards, files in halves.items():
        prepare_shards(TextSource(str(corpus / files)), shards, 3000, tokenizer)
    mixture = json.dumps({str(shards): weight for shards, weight in zip(halves, (0.6, 0.4))})
    common = ["--token_shards", mixture, "--max_steps", "8", "--tokens_per_step", "256", "--checkpoint_interval", "8",
              "--hellaswag_data", "null"]  # fmt: skip
    run_train(tmp_path / "one", *common)  # 1 process x 2 micro-steps of 4 x 32
    run_train(tmp_path / "two", *common, nproc=2)  # 2 processes x 1 micro-step
    one, two = trainer_state(tmp_path / "one")["history"], trainer_state(tmp_path / "two")["history"]
    assert [s for s, _ in one["train_loss"]] == [s for s, _ in two["train_loss"]]
    for (_, a), (_, b) in zip(one["train_loss"], two["train_loss"]):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-5)
    assert one["val_loss"][-1][1] == pytest.approx(two["val_loss"][-1][1], rel=1e-5)
    w1, w2 = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    # Gradients differ only in fp32 summation order (1e-7 relative); Adam divides by sqrt(v), so for a near-zero
    # gradient that noise can move a weight by a sizeable share of one step (lr 3e-3): 1e-4 is 3% of a step.
    for name in w1:
        torch.testing.assert_close(w1[name], w2[name], rtol=1e-3, atol=1e-4, msg=name)

    # docs/training.md's multi-node command: two "machines" of one process each (here on one host), the same 2 ranks.
    port = free_port()
    machines = [
        subprocess.Popen(
            [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
             "--num_processes", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
             "--main_process_port", port, str(ROOT / "train.py"), "--run_dir", str(tmp_path / "nodes"), *TINY,
             *common],
            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in (0, 1)
    ]  # fmt: skip
    outputs = [machine.communicate(timeout=300)[0] for machine in machines]
    assert all(machine.returncode == 0 for machine in machines), outputs[0][-3000:] + outputs[1][-3000:]
    assert "processes 2 " in outputs[0]
    nodes = final_weights(tmp_path / "nodes")
    assert all(torch.equal(nodes[name], w2[name]) for name in w2)  # bitwise the single-node 2-process run
    drawn = [trainer_state(tmp_path / run)["history"]["drawn"][-1][1] for run in ("one", "two", "nodes")]
    assert drawn[0] == drawn[1] == drawn[2] and sum(drawn[0].values()) == 8 * 256


def kill_after_checkpoint(run_dir: Path, args: list[str], nproc: int, step_name: str) -> None:
    """Start a run, SIGKILL it (no chance to clean up) soon after checkpoint `step_name` appears."""
    command = [str(ROOT / "train.py"), "--run_dir", str(run_dir), *TINY, *args]
    if nproc > 1:
        command = [
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_port",
            free_port(),
            *command,
        ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, *command], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 240
    while not (run_dir / "checkpoints" / step_name).exists():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.1)  # into the next steps (a tiny run makes 8 more, and finishes, in well under a second)
    # torchrun starts its workers in sessions of their own: SIGKILL every process of this run, found by command line,
    # until none is left (a worker forked during one scan is caught by the next).
    while True:
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and str(run_dir).encode() in (proc / "cmdline").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
                    found.append(proc.name)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                pass
        if not found:
            break
        time.sleep(0.1)
    process.wait()
    assert not (run_dir / "model").exists()  # it really died before finishing


def sigterm_after_checkpoint(command: list[str], checkpoint: Path, every_process: bool = False) -> tuple[int, str]:
    """Start ``command``, send it SIGTERM as soon as ``checkpoint`` appears (a scheduler's preemption; with
    ``every_process``, to each of its processes, as SLURM's scancel signals every process of a job step): its exit
    status and everything it printed."""
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.time() + 240
    while not checkpoint.exists():
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.02)
    for pid in descendants(process.pid) if every_process else [process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    return process.returncode, output


def descendants(pid: int) -> list[int]:
    """``pid`` and every process under it, from /proc."""
    from gpt_scratch.requeue import _children

    tree, found = _children(), [pid]
    for parent in found:
        found.extend(tree.get(parent, []))
    return found


# 24 steps, a checkpoint every 8: the interrupted runs below stop between checkpoints and resume.
INTERRUPTED = ("--max_steps", "24", "--tokens_per_step", "256", "--checkpoint_interval", "8", "--hellaswag_data",
               "null", "--keep_checkpoints", "5")  # fmt: skip


# The tests that share the 2-process reference run on one pytest-xdist worker (--dist loadgroup), which makes it once.
SHARED_REFERENCE = pytest.mark.xdist_group("two-process reference")


# The mixture tests share their uninterrupted run the same way.
MIXTURE_REFERENCE = pytest.mark.xdist_group("mixture reference")


def mixture_args(corpus: Path) -> list[str]:
    """A mixture of two halves of the corpus, read by DataLoader workers, with window_shuffle and document_mask."""
    halves = {str(corpus / "part[01].jsonl"): 0.7, str(corpus / "part[23].jsonl"): 0.3}
    return ["--data", json.dumps(halves), "--window_shuffle", "16", "--document_mask", "true"]


# Two processes, each with its DataLoader workers, resume exactly after a SIGTERM under torchrun (the requeue test
# below): a resume after kill -9 loads an older checkpoint the same way.
@pytest.mark.parametrize(
    "workers, recipe", [(0, "gpt2"), (0, "modern"), pytest.param(2, "mixture", marks=MIXTURE_REFERENCE)]
)
def test_kill_9_then_resume_auto_reaches_the_same_weights(tmp_path, corpus, reference_run, workers, recipe):
    args = [*INTERRUPTED, "--data_workers", str(workers)]
    args += MODERN_ARGS if recipe == "modern" else []  # Muon's momentum buffers resume too
    args += mixture_args(corpus) if recipe == "mixture" else []  # each source's stream and the rows drawn resume
    straight = reference_run(*args)
    args = ["--data", str(corpus), *args]
    kill_after_checkpoint(tmp_path / "killed", args, 1, "step-000008")
    done = [p.name for p in checkpoint_dirs(tmp_path / "killed")]
    assert done and done[-1] != "step-000024"
    result = run_train(tmp_path / "killed", *args, "--resume", "auto")
    assert "resumed from" in result.stdout + result.stderr
    straight, resumed = final_weights(straight), final_weights(tmp_path / "killed")
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)  # bitwise


@SHARED_REFERENCE
def test_two_streaming_processes_train_and_the_loss_falls(reference_run):
    run = reference_run(*INTERRUPTED, "--data_workers", "2", nproc=2)  # the requeue test's reference, shared
    losses = [loss for _, loss in trainer_state(run)["history"]["train_loss"]]
    assert len(losses) == 24 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0, losses


def test_a_checkpoint_being_written_is_never_resumed_from(tmp_path, corpus):
    run_dir = tmp_path / "run"
    args = ["--data", str(corpus), "--max_steps", "8", "--tokens_per_step", "128", "--checkpoint_interval", "4",
            "--hellaswag_data", "null", "--keep_checkpoints", "5"]  # fmt: skip
    run_train(run_dir, *args)
    complete = checkpoint_dirs(run_dir)[-1]
    # What a process killed mid-save leaves: a staging directory of a later step, half written.
    partial = run_dir / "checkpoints" / ".tmp-step-000012"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes((complete / "model.safetensors").read_bytes()[:1000])
    assert resolve_resume("auto", run_dir) == complete
    result = run_train(run_dir, *args, "--max_steps", "10", "--resume", "auto")
    assert f"resumed from {complete}" in result.stdout + result.stderr
    # The card is the run's, titled by its name, and holds every command that made it, each with its steps.
    card = (run_dir / "model" / "README.md").read_text()
    assert "\n# run\n" in card, card
    made = card.split("## How it was made\n```bash\n")[1].split("```")[0].splitlines()
    assert len(made) == 2 and made[0].endswith(shlex.join(args) + "  # steps 0-8"), made
    assert made[1].endswith(shlex.join([*args, "--max_steps", "10", "--resume", "auto"]) + "  # steps 8-10"), made


def test_sigterm_checkpoints_the_current_step_and_stops_cleanly(tmp_path, corpus):
    run_dir = tmp_path / "run"
    args = ["--data", str(corpus), "--max_steps", "2000", "--tokens_per_step", "128", "--checkpoint_interval", "5",
            "--hellaswag_data", "null"]  # fmt: skip
    # --resume auto from the start, as a scheduler's requeued command is: nothing to resume yet, and it says so.
    command = [sys.executable, str(ROOT / "train.py"), "--run_dir", str(run_dir), *TINY, *args, "--resume", "auto"]
    returncode, output = sigterm_after_checkpoint(command, run_dir / "checkpoints" / "step-000005")
    assert returncode == 128 + signal.SIGTERM, output[-2000:]  # "preempted": the scheduler requeues
    assert f"no checkpoint in {run_dir}: starting a new run" in output, output[-2000:]
    hint = next(line for line in output.splitlines() if "stopped by signal 15" in line)
    assert hint.count("--resume auto") == 1, hint
    last = checkpoint_dirs(run_dir)[-1]
    step = json.loads((last / "trainer_state.json").read_text())["step"]
    assert 5 <= step < 2000 and not (run_dir / "model").exists()


@MIXTURE_REFERENCE
def test_sigterm_on_a_mixture_checkpoints_and_resumes_to_the_uninterrupted_weights(tmp_path, corpus, reference_run):
    args = [*INTERRUPTED, "--data_workers", "2", *mixture_args(corpus)]
    run_dir = tmp_path / "run"
    command = [sys.executable, str(ROOT / "train.py"), "--run_dir", str(run_dir), *TINY, "--data", str(corpus), *args]
    returncode, output = sigterm_after_checkpoint(command, run_dir / "checkpoints" / "step-000008")
    assert returncode == 128 + signal.SIGTERM, output[-2000:]
    assert not (run_dir / "model").exists()
    run_train(run_dir, "--data", str(corpus), *args, "--resume", "auto")
    straight, resumed = final_weights(reference_run(*args)), final_weights(run_dir)
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)  # bitwise
    drawn = list(trainer_state(run_dir)["history"]["drawn"][-1][1].values())  # over both processes that trained it
    assert sum(drawn) == 24 * 256 and abs(drawn[0] - 0.7 * 24 * 256) <= 32  # within one row of 32 tokens


def test_accelerate_launch_that_starts_fewer_processes_than_asked_warns_with_the_command_that_starts_them(
    tmp_path, corpus
):
    """With --multi_gpu, as advised, accelerate launch starts them: the two-machine launch of the test above shows it
    (`processes 2`), and the docs test runs docs/training.md's `accelerate launch --multi_gpu --num_processes 2`."""
    args = ("--data", str(corpus), "--max_steps", "2", "--hellaswag_data", "null", "--checkpoint_interval", "1000")
    # On a machine without GPUs, accelerate launch needs --multi_gpu to start several processes.
    single = run_train(tmp_path / "single", *args, launcher=["--num_processes", "2"])
    assert "processes 1 " in single.stdout
    assert "WARNING: launched for 2 processes (accelerate launch --num_processes 2) but running as 1" in single.stdout
    assert "accelerate launch --multi_gpu --num_processes 2" in single.stdout  # the command that works


def test_an_fsdp_config_on_a_machine_without_gpus_says_the_run_is_ddp(tmp_path, corpus):
    """accelerate launch with an FSDP config file: on CPUs Accelerate runs DDP over gloo; the run must say so."""
    config = tmp_path / "fsdp.yaml"
    config.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: FSDP\nnum_machines: 1\nnum_processes: 2\n"
        "machine_rank: 0\nmixed_precision: 'no'\nuse_cpu: true\nmain_process_port: "
        f"{free_port()}\nfsdp_config:\n  fsdp_version: 2\n"
        "  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP\n  fsdp_transformer_layer_cls_to_wrap: GPTScratchBlock\n"
        "  fsdp_state_dict_type: SHARDED_STATE_DICT\n"
    )
    args = ("--data", str(corpus), "--max_steps", "2", "--hellaswag_data", "null", "--checkpoint_interval", "1000")
    result = run_train(tmp_path / "run", *args, launcher=["--config_file", str(config)])
    assert "processes 2 " in result.stdout
    assert "WARNING: the Accelerate config asks for FSDP, but this run is DistributedType.MULTI_CPU" in result.stdout


def test_launch_check_reads_world_size_and_accelerate_num_processes():
    from gpt_scratch.launch import launch_mismatch

    assert "WORLD_SIZE=4" in launch_mismatch(2, {"WORLD_SIZE": "4"})
    assert "ACCELERATE_NUM_PROCESSES=8" in launch_mismatch(1, {"ACCELERATE_NUM_PROCESSES": "8"})
    assert launch_mismatch(2, {"WORLD_SIZE": "2"}) is None and launch_mismatch(1, {}) is None


@SHARED_REFERENCE
def fault_in_save(run_dir: Path, corpus: Path, fault: str, rank: int = 1, at: str = "save") -> str:
    """A 2-process run whose rank 1 gets ``fault`` as it starts step 2's checkpoint (tests/signal_in_save_worker.py);
    its combined output."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port(),
               str(ROOT / "tests" / "signal_in_save_worker.py"), "--run_dir", str(run_dir), *TINY, "--data",
               str(corpus), "--hellaswag_data", "null", "--max_steps", "6", "--checkpoint_interval", "2"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FAULT": fault, "FAULT_RANK": str(rank), "FAULT_AT": at}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    return result.stdout + result.stderr


def test_a_signal_reaching_one_process_during_a_save_stops_both_after_the_next_step(tmp_path, corpus):
    """SIGTERM to rank 1 alone, while it saves step 2's checkpoint: the processes agree at the end of step 3 and both
    stop after it, with its checkpoint and the resume line, instead of rank 1 stopping alone and rank 0 dying in a
    collective."""
    output = fault_in_save(tmp_path / "run", corpus, "sigterm")
    assert "stopped by signal 15 after step 3" in output, output[-3000:]
    assert 'train.py", line' not in output and "Connection closed by peer" not in output, output[-3000:]
    assert [path.name for path in checkpoint_dirs(tmp_path / "run")] == ["step-000002", "step-000003"]


# Rank 1 as it starts a checkpoint; rank 0 in its third step, after which torchrun terminates the survivor at once.
@pytest.mark.parametrize(("rank", "at"), [(1, "save"), (0, "step")])
def test_a_process_killed_mid_run_leaves_the_other_one_line_and_the_checkpoints_intact(tmp_path, corpus, rank, at):
    output = fault_in_save(tmp_path / "run", corpus, "sigkill", rank, at)
    assert "error: another process of this run stopped" in output and "--resume auto" in output, output[-3000:]
    assert 'train.py", line' not in output, output[-3000:]
    # At a save, step 2's never completed: none half-made; in step 3, step 2's is there, intact.
    assert [path.name for path in checkpoint_dirs(tmp_path / "run")] == ([] if at == "save" else ["step-000002"])


@SHARED_REFERENCE
def test_sigterm_under_torchrun_with_the_requeue_wrapper_exits_143_and_its_continue_command_resumes(
    tmp_path, corpus, reference_run
):
    """Preemption of a 2-process run as a scheduler sees it (``python -m gpt_scratch.requeue torchrun ...``): the
    workers stop after the same step with a checkpoint, torchrun ends without a traceback, the job exits 143 (requeue);
    the printed command is the whole launch command (a bare `python train.py` would be refused: 2 processes in the
    checkpoint), and running it as printed reaches the weights of an uninterrupted run."""
    straight_dir = reference_run(*INTERRUPTED, "--data_workers", "2", nproc=2)  # shared with the loss test above
    args = ["--data", str(corpus), *INTERRUPTED, "--data_workers", "2"]
    run_dir = tmp_path / "preempted"
    port = free_port()
    command = [sys.executable, "-m", "gpt_scratch.requeue", sys.executable, "-m", "torch.distributed.run",
               "--nproc_per_node", "2", "--master_port", port, str(ROOT / "train.py"), "--run_dir", str(run_dir),
               *TINY, *args]  # fmt: skip
    # SIGTERM to every process of the job, as scancel sends it: the wrapper, torchrun (whose SignalException
    # traceback used to follow the stop line) and the workers.
    returncode, output = sigterm_after_checkpoint(command, run_dir / "checkpoints" / "step-000008", every_process=True)
    assert returncode == 128 + signal.SIGTERM, output[-3000:]  # "preempted": the scheduler requeues
    assert "stopped by signal 15" in output and "Traceback" not in output, output[-3000:]
    step = json.loads((checkpoint_dirs(run_dir)[-1] / "trainer_state.json").read_text())["step"]
    assert 8 <= step < 24 and not (run_dir / "model").exists()
    resume = re.search(r"Continue with: (.+)", output).group(1)
    assert resume.startswith(f"python -m gpt_scratch.requeue {sys.executable} -m torch.distributed.run "), resume
    assert resume.endswith(" --resume auto") and resume.count("--resume") == 1, resume
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(resume.replace("python -m", f"{sys.executable} -m", 1), shell=True, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0 and "resumed from" in result.stdout + result.stderr, result.stderr[-3000:]
    straight, resumed = final_weights(straight_dir), final_weights(run_dir)
    for name in straight:
        torch.testing.assert_close(straight[name], resumed[name], rtol=1e-5, atol=1e-6, msg=name)


def test_sigterm_before_step_1_under_the_requeue_wrapper_is_a_preemption_too(tmp_path, corpus):
    """Workers signalled in setup die of it before they can stop by themselves: torchrun printed ChildFailedError and
    the wrapper exited 1, which a scheduler that requeues on 143 reads as a failure."""
    from gpt_scratch.requeue import run_processes

    command = [sys.executable, "-m", "gpt_scratch.requeue", sys.executable, "-m", "torch.distributed.run",
               "--nproc_per_node", "1", "--master_port", free_port(), str(ROOT / "train.py"), "--run_dir",
               str(tmp_path / "run"), *TINY, "--data", str(corpus), "--hellaswag_data", "null"]  # fmt: skip
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.time() + 120
    while not run_processes(process.pid):  # the worker is starting: importing torch, far from step 1
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "Traceback" not in output and "ChildFailedError" not in output, output[-3000:]
    assert "before the run's first checkpoint; nothing to save. Start it again with: python -m gpt_scratch.requeue" \
        in output  # fmt: skip
