"""Train a GPT from scratch, on one CPU or many GPUs, and export a Hugging Face model directory.

    python train.py configs/quickstart.yaml                      # 2 CPU cores, minutes, no download
    python train.py configs/gpt2-124m.yaml --lr 3e-4              # any config field can be overridden
    python train.py configs/finetune-gpt2.yaml --data "my-texts/*.txt"   # fine-tune GPT-2 (init_from: gpt2)
    accelerate launch --multi_gpu --num_processes 8 train.py configs/gpt2-124m.yaml
    python -m gpt_scratch.requeue torchrun --nproc_per_node 8 train.py configs/gpt2-124m.yaml   # under a scheduler
    python train.py configs/quickstart.yaml --resume auto         # continue a killed run exactly

Read top to bottom, one function per stage, as ``main`` calls them: ``setup`` (config, accelerator, run directory,
model, data, optimizer), ``resume`` (checked against the checkpoint's settings), ``fit`` (the loop: a step, the NaN
guard, the log line, ``evaluate``, the agreed stop, ``save``), ``export``. Accelerate owns devices, processes, mixed
precision and gradient synchronisation. The parts live in gpt_scratch, each module named for its job: the step,
optimizers and schedules in ``training/``, the batches in ``data/build.py``, where the first weights come from in
``init_from.py``, what the run says in ``reporting.py``, how its processes stop together in ``stopping.py``,
checkpoints in ``checkpoint.py``, the exported directory in ``saving.py``.
"""

import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

if __name__ == "__main__":  # --help and a mistake in the command or config answer now, not after torch loads (seconds)
    from gpt_scratch import cli
    from gpt_scratch.train_config import parse_args

    cli.run(lambda: parse_args(sys.argv[1:]))  # main() parses again: the same light step

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import load_file
from tqdm.auto import tqdm
from transformers.utils import logging as hf_logging

from gpt_scratch import GPTScratchForCausalLM
from gpt_scratch.chat_template import chat_tokenizer, fit_model_to_tokenizer
from gpt_scratch.checkpoint import (
    BEST_WEIGHTS,
    another_run_problem,
    check_resumable,
    keep_best_weights,
    load_checkpoint,
    resolve_resume,
    save_checkpoint,
)
from gpt_scratch.cli import USER_ERRORS
from gpt_scratch.data.build import RunData, chat_data, conversation_data, run_data
from gpt_scratch.divergence import CheckpointHealth, DivergedError, command_with, divergence_error
from gpt_scratch.export import card_details
from gpt_scratch.init_from import first_model
from gpt_scratch.launch import fsdp_mismatch, launch_mismatch, launcher_command
from gpt_scratch.plots import plot_training_curves
from gpt_scratch.reporting import (
    core_tasks,
    early_estimate,
    evaluation_lines,
    evaluation_tasks,
    headline_metric,
    log_line,
    plot_title,
    tracker_scalars,
)

# A run stopped by SIGTERM (preemption) or SIGINT exits with 128 + the signal number (143, 130) after a complete
# checkpoint, as a process killed by that signal would: schedulers read it as "preempted, requeue", not "done".
from gpt_scratch.requeue import STOPPED_BY_SIGNAL_EXIT, record_stop, under_wrapper
from gpt_scratch.run_lock import RunLock
from gpt_scratch.saving import check_export_target, push_to_hub, save_with_model_card
from gpt_scratch.stopping import (
    PeerLostError,
    agreed_stop_signal,
    peer_loss_said_at_once,
    peer_lost_line,
    stop_requests,
)
from gpt_scratch.storage import check_writable
from gpt_scratch.tasks import evaluate_tasks, task_items
from gpt_scratch.tasks.core import check_core_bundle, evaluate_core
from gpt_scratch.tokenizer import TextTokenizer, load_tokenizer
from gpt_scratch.train_config import TrainConfig, parse_args
from gpt_scratch.training import (
    apply_schedule,
    build_optimizers,
    chat_samples,
    check_optimizer_fits_parallelism,
    describe_optimizers,
    flops_per_token,
    generate_samples,
    lr_multiplier,
    peak_flops,
    prepare_with_schedules,
    role_learning_rates,
    run_validation,
    schedule_summary,
    train_step,
    use_training_loss,
    weights_are_finite,
)
from gpt_scratch.training.fp8 import convert_to_fp8, fp8_unavailable


def repo_relative(path: str | None) -> str | None:
    """A relative path that is not under the working directory, looked up beside this script (the bundled data)."""
    if path is None or Path(path).is_absolute() or Path(path).exists():
        return path
    beside = Path(__file__).resolve().parent / path
    return str(beside) if beside.exists() else path


@dataclass
class Run:
    """What the stages share: the settings, the accelerator and what it prepared, and where training stands."""

    config: TrainConfig
    argv: list[str]
    accelerator: Accelerator
    model: torch.nn.Module  # as prepared by Accelerate (DDP/FSDP wrapper): the one to train
    raw_model: GPTScratchForCausalLM  # the plain model: evaluation, sampling, export
    forward: Callable  # the model the step calls: compiled or not
    text_tokenizer: TextTokenizer  # the run's: encodes the data, measures bytes
    tokenizer: object  # the same as a transformers tokenizer: samples, HellaSwag, export
    optimizers: list  # AdamW, or Muon and AdamW (as prepared), each with its schedule
    schedulers: list
    data: RunData  # this process's training batches, every source's validation windows
    accumulation: int
    eot_token_id: int | None  # set when document_mask is on
    token_bytes: torch.Tensor | None  # each id's length in bytes: validation's bits per byte (not of a chat's answers)
    # The pretrained model the run started from (init_from: its description and Hub id), or None: random weights.
    # Kept in every checkpoint, so that a resumed fine-tune's card names it without reading the source again.
    origin: dict | None = None
    checkpoint: Path | None = None  # the checkpoint to resume from (--resume), found before the model was built
    resume_notes: list[str] = field(default_factory=list)  # what --resume auto chose instead, said by resume()
    history: dict = field(default_factory=lambda: {"train_loss": [], "val_loss": [], "val_bpb": [], "tasks": {}})
    start_step: int = 0
    last_checkpoint: Path | None = None  # the newest checkpoint written or resumed from, verified finite
    # Every command that trained this run, with the step it started from (a resumed run's card lists them all), and
    # the seconds spent by the processes before this one.
    commands: list[dict] = field(default_factory=list)
    earlier_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    health: CheckpointHealth = field(default_factory=CheckpointHealth)  # which checkpoint a healthy step followed

    @property
    def run_dir(self) -> Path:
        return Path(self.config.run_dir)

    def say(self, text: str) -> None:
        self.accelerator.print(text)

    def current_lr(self) -> float:
        """Where the schedule has ``lr`` now (the gains' group; every other group moves by the same factor)."""
        groups = self.optimizers[-1].param_groups
        return next((g["lr"] for g in groups if g.get("role") == "gain"), groups[0]["lr"])

    def arguments(self) -> list[str]:
        """The command line of this run: the launcher's under torchrun / accelerate launch (same process count)."""
        return launcher_command() or ["python", "train.py", *self.argv]

    def command(self) -> str:
        return shlex.join(self.arguments())

    def seconds(self) -> float:
        """Wall-clock seconds this run has trained, over every process that continued it."""
        return self.earlier_seconds + time.perf_counter() - self.started

    def how_it_was_made(self) -> str:
        """The commands that trained this run, one per line with the steps each covered: what reproduces it."""
        ends = [entry["from_step"] for entry in self.commands[1:]] + [self.config.max_steps]
        return "\n".join(f"{entry['command']}  # steps {entry['from_step']}-{end}"
                         for entry, end in zip(self.commands, ends))  # fmt: skip

    def diverged(self, what: str) -> DivergedError:
        """The error that stops the run, with the command that recovers (gpt_scratch.divergence)."""
        return divergence_error(what, self.config, self.health, self.run_dir, self.arguments(),
                                self.accelerator.is_main_process)  # fmt: skip


def setup(argv: list[str], cleanup: ExitStack) -> Run:
    """Settings, accelerator (devices, processes, precision), run directory, model, tokenizer, data, optimizer.

    What must be undone when the run ends, however it ends (the run lock), goes on ``cleanup``."""
    config = parse_args(argv)
    config.hellaswag_data = repo_relative(config.hellaswag_data)
    config.eval_task_data = {name: repo_relative(path) for name, path in config.eval_task_data.items()}
    # Every task's items now (a Hub dataset downloads, or is found in the cache): a wrong path, a bad row, too few
    # few-shot examples or no network fails before step 1, not after eval_interval steps.
    names, data, limits = evaluation_tasks(config)
    task_items(names, data, config.eval_num_fewshot, limits)
    core_labels, bundle = core_tasks(config)
    if core_labels is not None:  # CORE's bundle (cached or downloaded now) and every task's rows, checked
        config.eval_task_data["core"] = str(check_core_bundle(bundle, core_labels, config.eval_task_limit))
    accelerator = Accelerator(
        # On a machine without GPUs, cpu=True is what makes Accelerate join the processes torchrun started (gloo).
        cpu=not torch.cuda.is_available(),
        mixed_precision=config.mixed_precision,
        # The schedule counts optimizer steps; by default Accelerate would step it once per process per step.
        step_scheduler_with_optimizer=False,
        log_with=None if config.report_to == "none" else config.report_to,
        project_dir=config.run_dir,
    )
    if config.fp8 and (problem := fp8_unavailable(accelerator.device)):
        raise ValueError(f"{problem}; set fp8: false")
    if note := config.fit_micro_batch(accelerator.num_processes):
        accelerator.print(note)
    accumulation = config.gradient_accumulation_steps(accelerator.num_processes)
    set_seed(config.seed)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls on Ampere and newer
        torch.backends.cudnn.allow_tf32 = True
    claim_run_dir(config, accelerator, cleanup)
    # The checkpoint to resume from, before the model is built (a fine-tune's is built from it); what was chosen
    # instead of the obvious (a damaged one skipped, none there) is said when the run resumes.
    resume_notes: list[str] = []
    checkpoint = resolve_resume(config.resume, config.run_dir, resume_notes.append)
    if config.report_to != "none":
        # wandb keeps its files in the run directory (offline runs sync from there), not in the working directory.
        accelerator.init_trackers(Path(config.run_dir).name, config=config.hyperparameters(),
                                  init_kwargs={"wandb": {"dir": config.run_dir}})  # fmt: skip
    for mismatch in (launch_mismatch(accelerator.num_processes), fsdp_mismatch(accelerator.distributed_type)):
        if mismatch:
            accelerator.print(f"WARNING: {mismatch}")
    # A pretrained start (init_from) decides the architecture and the tokenizer; a resumed one takes both from its
    # checkpoint, without reading the source again (gpt_scratch.init_from); else the preset does.
    model, origin = first_model(config, checkpoint, accelerator)
    text_tokenizer = load_tokenizer(config.tokenizer)  # the model's vocab_size and <|endoftext|> id are its own
    tokenizer = text_tokenizer.hf_tokenizer(model.config.n_positions)
    chat = chat_data(config)
    if chat:  # a chat fine-tune: the template and its tokens (padded rows, or new ones), before the optimizer
        tokenizer = chat_tokenizer(tokenizer, config)
        fit_model_to_tokenizer(model, tokenizer, accelerator.print)
    describe_start(config, model, origin, text_tokenizer, accelerator, accumulation)
    if config.fp8:  # before the optimizers and the wrapping: both then see the converted layers
        converted = convert_to_fp8(model, include_head=config.fp8_head)
        accelerator.print(f"FP8 (torchao float8 training): {len(converted)} linear layers")
    if chat:
        data = conversation_data(config, tokenizer, accelerator.process_index, accelerator.num_processes,
                                 accelerator.print)  # fmt: skip
    else:
        data = run_data(config, text_tokenizer, accelerator.process_index, accelerator.num_processes, accumulation,
                        accelerator.print)  # fmt: skip
    check_optimizer_fits_parallelism(config, accelerator.distributed_type)
    optimizers = build_optimizers(model, config, accelerator.device)
    default = (
        " (matrix_lr not set: Muon's own scale)" if config.optimizer == "muon" and config.matrix_lr is None else ""
    )
    accelerator.print(f"optimizer: {describe_optimizers(optimizers)}{default} | schedule {schedule_summary(config)}")
    prepared, optimizers, schedulers = prepare_with_schedules(
        accelerator, model, optimizers, lambda step: lr_multiplier(step, config)
    )
    raw_model = accelerator.unwrap_model(prepared)
    accelerator.print(f"loss: {use_training_loss(raw_model, config, accelerator.device, config.compile)}")
    # The model traces as one graph (tests/test_compile.py); under DDP, Accelerate's wrapper splits it at gradient
    # buckets, by design. Evaluation and sampling call the plain model.
    forward = torch.compile(prepared) if config.compile else prepared
    # document_mask: <|endoftext|> opens each packed document; attention stays within documents.
    eot_token_id = tokenizer.eos_token_id if config.document_mask else None
    return Run(config, argv, accelerator, prepared, raw_model, forward, text_tokenizer, tokenizer, optimizers,
               schedulers, data, accumulation, eot_token_id, None if chat else text_tokenizer.token_bytes(), origin,
               checkpoint, resume_notes)  # fmt: skip


def claim_run_dir(config: TrainConfig, accelerator: Accelerator, cleanup: ExitStack) -> None:
    """On the main process, before anything is written: the export target and the run directory checked (writable,
    not another run's), and the run lock taken (released on ``cleanup``)."""
    if not accelerator.is_main_process:
        return
    run_dir = Path(config.run_dir)
    export_dir = Path(config.export_dir or run_dir / "model")
    check_export_target(export_dir)  # an export must never replace the run
    check_writable(run_dir / "checkpoints")  # now, not at the first checkpoint after hours of training
    check_writable(export_dir.parent, "the run could not export its model at the end",
                   "Choose another --export_dir, or make this one writable")  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)  # for its lock; checkpoints/ comes with the first checkpoint
    lock = RunLock(run_dir).acquire()  # a second run on this run_dir stops now
    cleanup.callback(lock.release)  # on any exit but kill -9, whose lock the kernel drops with the process
    # A new run must not replace a finished one, nor take over its checkpoints.
    if config.resume is None and (problem := another_run_problem(run_dir, config.to_dict())):
        raise ValueError(problem)
    if lock.note:
        print(lock.note)


def describe_start(config: TrainConfig, model, origin: dict | None, tokenizer: TextTokenizer, accelerator: Accelerator,
                   accumulation: int) -> None:  # fmt: skip
    """The startup lines: the model and how it is fed, the tokenizer when not GPT-2's, a padding that wastes rows."""
    parameters = sum(p.numel() for p in model.parameters())
    name = origin["description"] if origin else config.model
    accelerator.print(
        f"model: {name} {parameters / 1e6:.2f}M parameters | processes {accelerator.num_processes} | "
        f"micro-batch {config.micro_batch_size}x{config.seq_len} | accumulation {accumulation} | "
        f"{config.tokens_per_step:,} tokens/step | device {accelerator.device}"
    )
    if config.tokenizer != "gpt2":
        accelerator.print(f"tokenizer: {config.tokenizer} ({tokenizer.vocab_size:,} tokens)")
    if (config.padded_vocab_size or 0) >= tokenizer.vocab_size + 128:
        accelerator.print(f"WARNING: padded_vocab_size {config.padded_vocab_size} gives the embedding and head "
                          f"{config.padded_vocab_size - tokenizer.vocab_size:,} rows no token uses (the tokenizer "
                          f"has {tokenizer.vocab_size:,}); set padded_vocab_size: null")  # fmt: skip


def resume(run: Run) -> None:
    """Continue from the checkpoint ``--resume`` names: refused if it would be another run, else restored exactly."""
    for note in run.resume_notes:
        run.say(note)
    checkpoint = run.checkpoint
    if checkpoint is None:
        return
    # Before loading: other model shapes, data or batch settings are refused by name, not by a size mismatch.
    changes = check_resumable(checkpoint, run.config.to_dict(), run.accelerator.num_processes,
                              run.data.shards_identities(), run.text_tokenizer.identity())  # fmt: skip
    data_state, trainer_state = load_checkpoint(run.accelerator, checkpoint)
    if not weights_are_finite(run.raw_model, run.accelerator):
        raise DivergedError(
            f"{checkpoint} holds non-finite weights (saved by an older version without the check); resume from an "
            "earlier checkpoint with --resume PATH"
        )
    run.data.train.load_state_dict(data_state)
    # The schedule of the settings given now (each role's lr, min_lr, schedule, warmup_steps, max_steps), from the
    # saved step on.
    for optimizer, scheduler in zip(run.optimizers, run.schedulers):
        apply_schedule(scheduler, optimizer, trainer_state["step"], role_learning_rates(run.config))
    run.start_step, run.history, run.last_checkpoint = trainer_state["step"], trainer_state["history"], checkpoint
    run.commands, run.earlier_seconds = trainer_state.get("commands", []), trainer_state.get("seconds", 0.0)
    run.origin = trainer_state.get("origin", run.origin)
    run.history.setdefault("val_bpb", [])  # a checkpoint from before bits per byte
    run.health.checkpointed(checkpoint, [loss for _, loss in run.history["train_loss"]])
    run.say(f"resumed from {checkpoint} at step {run.start_step}")
    for name, (old, new) in changes.items():
        run.say(f"  {name}: {old!r} -> {new!r}")


def validate(run: Run, step: int) -> dict:
    """The validation loss and bits per byte (of a mixture, each source's too, and the tokens drawn from each), kept
    in the history."""
    results = run_validation(run.model, run.data, run.accelerator, run.eot_token_id, run.token_bytes,
                             run.config.seq_len)  # fmt: skip
    run.history["val_loss"].append((step, results["val_loss"]))
    if "val_bpb" in results:
        run.history["val_bpb"].append((step, results["val_bpb"]))
    for label, figures in results.get("sources", {}).items():  # a mixture's sources
        for name, value in figures.items():
            run.history.setdefault("val_sources", {}).setdefault(label, {}).setdefault(name, []).append((step, value))
    if "drawn" in results:
        run.history.setdefault("drawn", []).append((step, results["drawn"]))
    return results


def evaluate(run: Run, step: int) -> dict:
    """Validation loss and the benchmark tasks on every process; samples, the loss curve and the log on the main
    one."""
    config, accelerator = run.config, run.accelerator
    results = validate(run, step)
    names, data, limits = evaluation_tasks(config)
    if names:
        tasks = evaluate_tasks(run.raw_model, run.tokenizer, names, data, config.eval_num_fewshot, limits,
                               batch_size=32, accelerator=accelerator)  # fmt: skip
        results["tasks"] = tasks
        curves = run.history.setdefault("tasks", {})
        for name in names:
            curves.setdefault(name, []).append((step, tasks[name][headline_metric(tasks[name])]))
        # Every metric of the last evaluation, for the card of an export made from a checkpoint.
        run.history["task_results"] = {name: {k: v for k, v in result.items() if k != "details"}
                                       for name, result in tasks.items()}  # fmt: skip
    core_labels, bundle = core_tasks(config)
    if core_labels is not None:  # CORE as nanochat scores it, on max_per_task = eval_task_limit items per task
        core = evaluate_core(run.raw_model, run.tokenizer, bundle, core_labels or None, config.eval_task_limit,
                             batch_size=32, accelerator=accelerator)  # fmt: skip
        results["core"] = {"core": core["core"], "tasks": core["tasks"]}
        run.history.setdefault("tasks", {}).setdefault("core", []).append((step, core["core"]))
        run.history["core_results"] = results["core"]  # the last evaluation's, for the card
    # On every process (FSDP gathers); at step 0 only from a pretrained start (random weights write noise).
    samples = []
    if run.data.prompts:  # a chat fine-tune: the replies to held-out prompts
        samples = chat_samples(run.raw_model, run.tokenizer, run.data.prompts, config, accelerator.device)
    elif step or run.origin:
        samples = generate_samples(run.raw_model, run.tokenizer, config, accelerator.device)
    if accelerator.is_main_process:
        for line in evaluation_lines(step, results):
            run.say(line)
        for sample in samples:
            run.say("  sample: " + sample.replace("\n", " ")[:200])
        if samples:
            (run.run_dir / "samples.txt").write_text("\n\n".join(samples))
        if truncated := getattr(run.data.train, "truncated", 0):  # a chat fine-tune's conversations cut to a window
            run.say(f"  data: {truncated} training conversations so far were longer than seq_len + 1 "
                    f"({config.seq_len + 1} tokens) and were cut there")  # fmt: skip
        if step > 0:  # one point is no curve: step 0's is drawn with the next evaluation's
            plot_training_curves(run.history, run.run_dir / "loss.png",
                                 title=plot_title(run.run_dir, run.raw_model, run.data))  # fmt: skip
    accelerator.log(tracker_scalars(results), step=step)
    if config.export_best and results["val_loss"] < run.history.get("best", [None, math.inf])[1]:
        keep_best_weights(accelerator, run.model, run.run_dir)
        run.history["best"] = [step, results["val_loss"]]  # in the history: a resumed run knows it
    return results


def run_state(run: Run, step: int) -> dict:
    """What a checkpoint records of the run besides the weights and data: what a resume and the model card read."""
    # The shards' identities: a resume recognises the same shards at another path, and refuses others.
    return {"step": step, "history": run.history, "config": run.config.to_dict(),
            "tokens_seen": step * run.config.tokens_per_step, "tokenizer_identity": run.text_tokenizer.identity(),
            "commands": run.commands, "seconds": run.seconds(), "model_config": run.raw_model.config.to_dict(),
            "origin": run.origin, "token_shards_identities": run.data.shards_identities(),
            # a chat fine-tune's template: an export from a checkpoint carries it without reading the data again
            "chat_template": run.tokenizer.chat_template if run.data.prompts else None}  # fmt: skip


def save(run: Run, step: int) -> None:
    """A checkpoint after ``step``, never of non-finite weights (a step can make them NaN with a finite loss)."""
    if not weights_are_finite(run.raw_model, run.accelerator):
        raise run.diverged(f"the weights became non-finite by step {step}; nothing was saved")
    model_bytes = sum(p.numel() * p.element_size() for p in run.raw_model.parameters())  # + 2 optimizer states
    run.last_checkpoint = save_checkpoint(run.accelerator, run.run_dir, step, run.data.train.state_dict(),
                                          run_state(run, step), run.config.keep_checkpoints,
                                          protect=run.health.last_good, estimate=3 * model_bytes)  # fmt: skip
    run.health.checkpointed(run.last_checkpoint)


def fit(run: Run) -> dict:
    """The loop from ``start_step`` to ``max_steps``: step, NaN guard, log line, evaluation, agreed stop,
    checkpoint; stops cleanly on SIGTERM/SIGINT. Returns the last evaluation's results."""
    config, accelerator = run.config, run.accelerator
    run.model.train()
    device_peak = peak_flops(accelerator.device)
    flops_token = flops_per_token(run.raw_model, config.seq_len)
    results = {}
    if run.start_step == 0:  # where training starts: the first point of every curve (a fine-tune's "before")
        results = evaluate(run, 0)
    # On a terminal only (disable=None: not when stderr is a file): a log redirected to a file gets the log lines,
    # not a bar that every evaluation line is glued to.
    bar = tqdm(total=config.max_steps, initial=run.start_step, disable=None if accelerator.is_local_main_process
               else True, desc="training", dynamic_ncols=True)  # fmt: skip
    interval_start, interval_tokens = time.perf_counter(), 0
    # The bar closes before an error reaches the user, so that the error is the last line they see.
    with stop_requests() as stop_requested, bar, peer_loss_said_at_once(bar):
        for step in range(run.start_step, config.max_steps):
            loss_sum, grad_norm = train_step(run.forward, run.model, run.data.train, run.optimizers, run.schedulers,
                                             accelerator, run.accumulation, config.grad_clip,
                                             run.eot_token_id)  # fmt: skip
            train_loss = accelerator.reduce(loss_sum, reduction="mean").item()
            if not math.isfinite(train_loss):
                raise run.diverged(f"loss became {train_loss} at step {step + 1}")
            if grad_norm is not None and not torch.isfinite(grad_norm):
                raise run.diverged(f"the gradient norm became {grad_norm.item()} at step {step + 1}")
            done = step + 1
            if spike := run.health.step(train_loss):
                run.say(f"WARNING: step {done}: {spike}; the checkpoint before it counts as good only once it passes")
            run.history["train_loss"].append((done, train_loss))
            bar.update(1)
            interval_tokens += config.tokens_per_step
            if step == run.start_step:
                warm_start = time.perf_counter()
            elif step == run.start_step + 1 and accelerator.is_local_main_process and (line := early_estimate(
                    time.perf_counter() - warm_start, config.max_steps - done, config.log_interval)):  # fmt: skip
                bar.write(line)

            if done % config.log_interval == 0 or done == config.max_steps:
                tokens_per_s = interval_tokens / (time.perf_counter() - interval_start)
                mfu = (flops_token * tokens_per_s / accelerator.num_processes / device_peak) if device_peak else None
                norm = grad_norm.item() if grad_norm is not None else float("nan")
                if accelerator.is_local_main_process:
                    bar.write(log_line(done, config.max_steps, train_loss, run.current_lr(), norm, tokens_per_s,
                                       config.tokens_per_step, mfu))  # fmt: skip
                metrics = {"train/loss": train_loss, "train/lr": run.current_lr(), "train/grad_norm": norm,
                           "train/tokens_per_s": tokens_per_s, **({"train/mfu": mfu} if mfu else {})}  # fmt: skip
                accelerator.log(metrics, step=done)
                interval_start, interval_tokens = time.perf_counter(), 0
            if done % config.eval_interval == 0 or done == config.max_steps:
                results = evaluate(run, done)
            # Read once per step: a signal that comes later (during the save below) is agreed on after the next
            # step. Every process stops after the same step, even if signalled apart; reading the local flag again
            # after the agreement let one process stop alone while the others went on to a dead collective.
            stop = stop_requested["signal"]
            if accelerator.num_processes > 1:
                stop = agreed_stop_signal(accelerator.device, stop)
            if done % config.checkpoint_interval == 0 or done == config.max_steps or stop:
                save(run, done)
            if stop:
                run.say(
                    f"stopped by signal {stop} after step {done}; checkpoint {run.last_checkpoint}. Continue with: "
                    f"{shlex.join(command_with(run.arguments(), {'resume': 'auto'}))}"
                )
                accelerator.end_training()
                # Under gpt_scratch.requeue the agreed stop exits 0, so that the launcher ends cleanly, and the
                # wrapper exits 128 + the signal it reads from the main process's record.
                if accelerator.is_main_process:
                    record_stop(stop)
                raise SystemExit(0 if under_wrapper() else STOPPED_BY_SIGNAL_EXIT + stop)
    return results


def export(run: Run, results: dict) -> None:
    """The trained model as a complete Hugging Face directory with its model card; pushed when asked."""
    config = run.config
    if not results:  # resumed after the last step: evaluate what we have
        results = evaluate(run, config.max_steps)
    # The full weights, gathered from every process (FSDP shards them), into a plain model on the main process.
    weights = run.accelerator.get_state_dict(run.model)
    history, exported = run.history, None
    if config.export_best and history.get("best") and history["best"][0] != config.max_steps:
        step, loss = history["best"]
        weights = load_file(run.run_dir / BEST_WEIGHTS)
        exported = (f"those of step {step}, the lowest validation loss ({loss:.4f}; the last step's: "
                    f"{results['val_loss']:.4f}), as export_best asks")  # fmt: skip
    if not run.accelerator.is_main_process:
        return
    model = GPTScratchForCausalLM(run.raw_model.config)
    model.load_state_dict(weights, strict=not config.export_best)  # the best weights: a tied head once
    model.tie_weights()
    model.generation_config = run.raw_model.generation_config  # a chat model's: it stops at the end of a turn
    export_dir = save_with_model_card(
        model,
        Path(config.export_dir or run.run_dir / "model"),
        run.tokenizer,
        command=run.how_it_was_made(),
        tokenizer_name=run.text_tokenizer.description,
        repo_id=config.push_to_hub,
        weights=exported,
        **card_details(run_state(run, config.max_steps), results),
    )
    if exported:
        run.say(f"exported weights: {exported}")
    minutes = run.seconds() / 60
    run.say(f"exported {export_dir} after {minutes:.1f} min of training; loss curve {run.run_dir / 'loss.png'}")
    if config.push_to_hub:
        push_to_hub(export_dir, config.push_to_hub, run.say)


def main(argv: list[str]) -> None:
    """The whole run, as ``python train.py ARGV`` does it; callable in-process (tests, notebooks): errors propagate
    as exceptions, and nothing is left held (the run lock, signal handlers) when it returns or raises."""
    started = time.perf_counter()
    with ExitStack() as cleanup:
        # transformers' own bars (Loading weights, Writing model shards) are not the run's progress: off while it runs.
        if hf_logging.is_progress_bar_enabled():
            hf_logging.disable_progress_bar()
            cleanup.callback(hf_logging.enable_progress_bar)
        run = setup(argv, cleanup)
        run.started = started
        resume(run)
        run.commands.append({"from_step": run.start_step, "command": run.command()})
        results = fit(run)
        export(run, results)
        # Every process leaves together: one that exits while the main one still writes the export can leave the
        # other's gloo process group waiting, at teardown, on a connection that is gone (seen once in 2-process runs).
        run.accelerator.wait_for_everyone()
        run.accelerator.end_training()


def cli(argv: list[str]) -> None:
    """``main`` as the command line runs it: a user's mistake is one line (``error: ...``, exit 1), not a traceback;
    ``GPT_SCRATCH_TRACEBACK=1`` shows the traceback."""
    try:
        main(argv)
    except torch.cuda.OutOfMemoryError as error:
        raise SystemExit(
            f"CUDA out of memory ({error}). Lower --micro_batch_size (gradient accumulation keeps tokens_per_step), "
            "or --seq_len, or use bf16 (--mixed_precision bf16)"
        ) from None
    except (*USER_ERRORS, DivergedError) as error:  # the same user errors as every other entry point
        if os.environ.get("GPT_SCRATCH_TRACEBACK"):
            raise
        raise SystemExit(f"error: {error}") from None
    except PeerLostError:
        raise SystemExit(1) from None  # its line is printed already
    except RuntimeError as error:
        if (line := peer_lost_line(error)) is None or os.environ.get("GPT_SCRATCH_TRACEBACK"):
            raise
        raise SystemExit(line) from None


if __name__ == "__main__":
    cli(sys.argv[1:])
