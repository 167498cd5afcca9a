"""Train a GPT from scratch, on one CPU or many GPUs, and export a Hugging Face model directory.

    python train.py configs/quickstart.yaml                      # 2 CPU cores, minutes, no download
    python train.py configs/gpt2-124m.yaml --lr 3e-4              # any config field can be overridden
    accelerate launch --multi_gpu --num_processes 8 train.py configs/gpt2-124m.yaml
    torchrun --nproc_per_node 8 train.py configs/gpt2-124m.yaml
    python train.py configs/quickstart.yaml --resume auto         # continue a killed run exactly

Read top to bottom, one function per stage, as ``main`` calls them: ``setup`` (config, accelerator, run lock, model,
data, optimizer), ``resume`` (checked against the checkpoint's settings), ``fit`` (the loop: a step, the NaN guard,
the log line, ``evaluate``, ``save``), ``export``. Accelerate owns devices, processes, mixed precision and gradient
synchronisation; everything else is here or in a gpt_scratch module named after it (the step itself:
gpt_scratch/training.py).
"""

import math
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from gpt_scratch import GPTScratchForCausalLM
from gpt_scratch.checkpoint import (
    another_run_problem,
    check_resumable,
    load_checkpoint,
    resolve_resume,
    save_checkpoint,
)
from gpt_scratch.cli import USER_ERRORS
from gpt_scratch.data import (
    PackedBatches,
    TextSource,
    TokenShardBatches,
    WorkerBatches,
    token_windows,
    validation_tokens,
)
from gpt_scratch.data.mixture import MixtureBatches, MixtureEntry, check_shard_directories, config_mixture, describe
from gpt_scratch.data.shards import shards_identity
from gpt_scratch.divergence import CheckpointHealth, command_with, lower_learning_rates, quarantine_after
from gpt_scratch.fp8 import convert_to_fp8, fp8_unavailable
from gpt_scratch.init_from import Start, start_from
from gpt_scratch.launch import fsdp_mismatch, launch_mismatch, launcher_command
from gpt_scratch.plots import plot_training_curves

# A run stopped by SIGTERM (preemption) or SIGINT exits with 128 + the signal number (143, 130) after a complete
# checkpoint, as a process killed by that signal would: schedulers read it as "preempted, requeue", not "done".
from gpt_scratch.requeue import STOPPED_BY_SIGNAL_EXIT, record_stop, under_wrapper
from gpt_scratch.run_lock import RunLock
from gpt_scratch.saving import check_export_target, push_to_hub, save_with_model_card
from gpt_scratch.storage import check_writable
from gpt_scratch.tasks import TASKS, evaluate_tasks, resolve_task_names, task_items
from gpt_scratch.tokenizer import TextTokenizer, load_tokenizer, tokenizer_exists
from gpt_scratch.tokenizer.trainer import VAL_DOCS, rounded_vocab_size, train_tokenizer, training_lock
from gpt_scratch.train_config import TrainConfig, parse_args
from gpt_scratch.training import (
    apply_schedule,
    build_optimizers,
    check_optimizer_fits_parallelism,
    describe_optimizers,
    flops_per_token,
    generate_samples,
    lr_multiplier,
    mixture_validation_metrics,
    peak_flops,
    prepare_with_schedules,
    role_learning_rates,
    train_step,
    use_training_loss,
    validation_metrics,
    weights_are_finite,
)

# How a collective reports that another process of the run is gone (killed, out of memory, its machine lost).
PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL communicator was aborted")


class NonFiniteLossError(RuntimeError):
    pass


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
    start: Start | None  # the pretrained model the run started from (init_from), or None: random weights
    accelerator: Accelerator
    model: torch.nn.Module  # as prepared by Accelerate (DDP/FSDP wrapper): the one to train
    raw_model: GPTScratchForCausalLM  # the plain model: evaluation, sampling, export
    forward: Callable  # the model the step calls: compiled or not
    text_tokenizer: TextTokenizer  # the run's: encodes the data, measures bytes
    tokenizer: object  # the same as a transformers tokenizer: samples, HellaSwag, export
    optimizers: list  # AdamW, or Muon and AdamW (as prepared), each with its schedule
    schedulers: list
    train_data: object  # next_batch(), state_dict(), load_state_dict(); a mixture's also `drawn` (rows per source)
    val_windows: list[torch.Tensor] | dict[str, list[torch.Tensor]]  # a mixture's: per source, by label
    mixture: list[MixtureEntry] | None  # the sources and weights of a mixture (gpt_scratch.data.mixture), or None
    accumulation: int
    eot_token_id: int | None  # set when document_mask is on
    history: dict = field(default_factory=lambda: {"train_loss": [], "val_loss": [], "val_bpb": [], "tasks": {}})
    start_step: int = 0
    token_bytes: torch.Tensor | None = None  # each id's length in bytes: validation's bits per byte
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


def setup(argv: list[str], cleanup: ExitStack) -> Run:
    """Settings, accelerator (devices, processes, precision), run lock, tokenizer, trackers, model, data, optimizer.

    What must be undone when the run ends, however it ends (the run lock), goes on ``cleanup``."""
    config = parse_args(argv)
    config.hellaswag_data = repo_relative(config.hellaswag_data)
    config.eval_task_data = {name: repo_relative(path) for name, path in config.eval_task_data.items()}
    # Every task's items now (a Hub dataset downloads, or is found in the cache): a wrong path, a bad row, too few
    # few-shot examples or no network fails before step 1, not after eval_interval steps.
    names, data, limits = evaluation_tasks(config)
    task_items(names, data, config.eval_num_fewshot, limits)
    run_dir = Path(config.run_dir)
    accelerator = Accelerator(
        # On a machine without GPUs, cpu=True is what makes Accelerate join the processes torchrun started (gloo).
        cpu=not torch.cuda.is_available(),
        mixed_precision=config.mixed_precision,
        # The schedule counts optimizer steps; by default Accelerate would step it once per process per step.
        step_scheduler_with_optimizer=False,
        log_with=None if config.report_to == "none" else config.report_to,
        project_dir=str(run_dir),
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
    if accelerator.is_main_process:
        export_dir = Path(config.export_dir or run_dir / "model")
        check_export_target(export_dir)  # an export must never replace the run
        check_writable(run_dir / "checkpoints")  # now, not at the first checkpoint after hours of training
        check_writable(export_dir.parent, "the run could not export its model at the end",
                       "Choose another --export_dir, or make this one writable")  # fmt: skip
        run_dir.mkdir(parents=True, exist_ok=True)  # for its lock; checkpoints/ comes with the first checkpoint
        lock = RunLock(run_dir).acquire()  # before anything writes here: a second run on this run_dir stops now
        cleanup.callback(lock.release)  # on any exit but kill -9, whose lock the kernel drops with the process
        # A new run must not replace a finished one, nor take over its checkpoints.
        if config.resume is None and (problem := another_run_problem(run_dir)):
            raise ValueError(problem)
        if lock.note:
            print(lock.note)
    if config.report_to != "none":
        # wandb keeps its files in the run directory (offline runs sync from there), not in the working directory.
        tracker_kwargs = {"wandb": {"dir": str(run_dir)}}
        accelerator.init_trackers(run_dir.name, config=config.hyperparameters(), init_kwargs=tracker_kwargs)
    for mismatch in (launch_mismatch(accelerator.num_processes), fsdp_mismatch(accelerator.distributed_type)):
        if mismatch:
            accelerator.print(f"WARNING: {mismatch}")

    # A pretrained start decides the architecture and the tokenizer (gpt_scratch.init_from); else the preset does.
    start = start_from(config) if config.init_from else None
    if start is None:
        prepare_tokenizer(config, accelerator)
    model = start.model if start else GPTScratchForCausalLM(config.model_config())
    accelerator.print(
        f"model: {start.description if start else config.model} "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters | "
        f"processes {accelerator.num_processes} | micro-batch {config.micro_batch_size}x{config.seq_len} | "
        f"accumulation {accumulation} | {config.tokens_per_step:,} tokens/step | device {accelerator.device}"
    )
    if config.fp8:  # before the optimizers and the wrapping: both then see the converted layers
        converted = convert_to_fp8(model, include_head=config.fp8_head)
        accelerator.print(f"FP8 (torchao float8 training): {len(converted)} linear layers")
    text_tokenizer = load_tokenizer(config.tokenizer)  # the model's vocab_size and <|endoftext|> id are its own
    if config.tokenizer != "gpt2":
        accelerator.print(f"tokenizer: {config.tokenizer} ({text_tokenizer.vocab_size:,} tokens)")
    if (config.padded_vocab_size or 0) >= text_tokenizer.vocab_size + 128:
        accelerator.print(f"WARNING: padded_vocab_size {config.padded_vocab_size} gives the embedding and head "
                          f"{config.padded_vocab_size - text_tokenizer.vocab_size:,} rows no token uses (the tokenizer "
                          f"has {text_tokenizer.vocab_size:,}); set padded_vocab_size: null")  # fmt: skip
    tokenizer = text_tokenizer.hf_tokenizer(model.config.n_positions)
    if mixture := config_mixture(config):
        check_shard_directories(mixture)
        # Each source holds out its own first val_docs documents (gpt_scratch.data.mixture).
        held_out = {entry.label: validation_tokens(entry.source, entry.held_out(config.val_docs), text_tokenizer,
                                                   own_val_docs(entry), accelerator.print)
                    for entry in mixture}  # fmt: skip
        val_windows = {label: source_windows(label, tokens, config) for label, tokens in held_out.items()}
        accelerator.print(f"data: a mixture of {len(mixture)} sources by training tokens: {describe(mixture)}")
        train_data = mixture_data(config, mixture, accelerator, [len(tokens) for tokens in held_out.values()],
                                  accumulation, text_tokenizer)  # fmt: skip
    else:
        source = TextSource(config.data, config.data_name, config.data_split, config.text_column)
        held_out = validation_tokens(source, config.val_docs, text_tokenizer, say=accelerator.print)
        val_windows = token_windows(held_out, config.seq_len, config.micro_batch_size)[: config.val_batches]
        train_data = training_data(config, source, accelerator, skip_tokens=len(held_out), accumulation=accumulation,
                                   tokenizer=text_tokenizer)  # fmt: skip

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
    return Run(
        config=config,
        argv=argv,
        start=start,
        accelerator=accelerator,
        model=prepared,
        raw_model=raw_model,
        # The model traces as one graph (tests/test_compile.py); under DDP, Accelerate's wrapper splits it at
        # gradient buckets, by design. Evaluation and sampling call the plain model.
        forward=torch.compile(prepared) if config.compile else prepared,
        text_tokenizer=text_tokenizer,
        tokenizer=tokenizer,
        optimizers=optimizers,
        schedulers=schedulers,
        train_data=train_data,
        val_windows=val_windows,
        mixture=mixture,
        accumulation=accumulation,
        # document_mask: <|endoftext|> opens each packed document; attention stays within documents.
        eot_token_id=tokenizer.eos_token_id if config.document_mask else None,
        token_bytes=text_tokenizer.token_bytes(),
    )


def prepare_tokenizer(config: TrainConfig, accelerator: Accelerator) -> None:
    """Train the tokenizer directory the config names when ``tokenizer_vocab_size`` is set and it does not exist
    yet: the main process trains it (as ``python -m gpt_scratch.tokenizer train`` would) while the others wait."""
    if config.tokenizer_vocab_size is None:
        return
    with accelerator.main_process_first(), ExitStack() as held:  # the same barrier on every process
        if not accelerator.is_main_process:
            return
        held.enter_context(training_lock(config.tokenizer, accelerator.print))  # another run may be training it
        if tokenizer_exists(config.tokenizer):
            size = load_tokenizer(config.tokenizer).vocab_size
            if size != rounded_vocab_size(config.tokenizer_vocab_size):
                accelerator.print(
                    f"tokenizer: {config.tokenizer} exists ({size:,} tokens) and is used as it is; "
                    f"tokenizer_vocab_size ({config.tokenizer_vocab_size}) applies to training a missing one"
                )
            return
        if config.tokenizer_data is None:  # the run's own data, read as the run reads it
            source = TextSource(config.data, config.data_name, config.data_split, config.text_column)
        else:
            source = TextSource(config.tokenizer_data)
        accelerator.print(f"tokenizer: {config.tokenizer} does not exist yet; training it on {source.path}")
        # At least the run's validation documents held out, and the CLI's default: the same tokenizer it makes.
        summary = train_tokenizer(source, config.tokenizer_vocab_size, config.tokenizer,
                                  val_docs=max(config.val_docs, VAL_DOCS))  # fmt: skip
        accelerator.print(summary.line(config.tokenizer))


def schedule_summary(config: TrainConfig) -> str:
    """The schedule in words, for the startup line."""
    ends = f"to x{config.min_lr / config.lr:g} at step {config.max_steps}"
    if config.lr_schedule == "wsd":
        decay = f"constant, linear decay over the last {config.decay_steps} steps {ends}"
        return f"wsd: warmup {config.warmup_steps}, {decay}"
    return f"cosine: warmup {config.warmup_steps}, cosine decay {ends}"


def training_data(
    config: TrainConfig,
    source: TextSource,
    accelerator: Accelerator,
    skip_tokens: int,
    accumulation: int,
    tokenizer: TextTokenizer,
):
    """This process's batches: pre-tokenized shards, or the source streamed (optionally by DataLoader workers)."""
    if config.token_shards:
        # The first val_docs documents open shard 0 (shards keep the source's order): start training after them.
        return TokenShardBatches(
            config.token_shards,
            config.micro_batch_size,
            config.seq_len,
            accelerator.process_index,
            accelerator.num_processes,
            start_token=skip_tokens,
            source=source,  # the shards must be of the run's data: validation reads the data itself
            tokenizer=tokenizer,  # and of its tokenizer
        )
    stream = PackedBatches(
        source,
        config.micro_batch_size,
        config.seq_len,
        accelerator.process_index,
        accelerator.num_processes,
        seed=config.seed,
        shuffle_buffer=config.shuffle_buffer,
        val_docs=config.val_docs,
        window_shuffle=config.window_shuffle,
        tokenizer=tokenizer,
    )
    return read_by_workers(config, stream, accumulation)


def read_by_workers(config: TrainConfig, dataset, accumulation: int):
    """``dataset`` read in ``data_workers`` DataLoader worker processes, off the training loop (they tokenize there)
    and resuming exactly; ``dataset`` itself when there are none."""
    if not config.data_workers:
        return dataset
    # Snapshots at checkpoint steps make a resume replay nothing; the cap bounds the replay after a SIGTERM.
    return WorkerBatches(
        dataset, config.data_workers, snapshot_every=min(config.checkpoint_interval * accumulation, 256)
    )


def own_val_docs(entry: MixtureEntry) -> str:
    """What to change when a mixture source cannot spare the held-out documents: its own val_docs (the run's would
    shrink every source's validation)."""
    return (f"give {entry.label} its own val_docs in the list form: data: [{{path: {entry.source.path}, weight: "
            f"{entry.weight:.4g}, val_docs: {{spare}}}}, ...]")  # fmt: skip


def source_windows(label: str, tokens: torch.Tensor, config: TrainConfig) -> list[torch.Tensor]:
    """One mixture source's validation windows, or an error naming the source."""
    try:
        return token_windows(tokens, config.seq_len, config.micro_batch_size)[: config.val_batches]
    except ValueError as error:
        raise ValueError(f"data: {label}: {error}; raise val_docs or lower seq_len") from None


def mixture_data(
    config: TrainConfig,
    mixture: list[MixtureEntry],
    accelerator: Accelerator,
    skip_tokens: list[int],
    accumulation: int,
    tokenizer: TextTokenizer,
):
    """This process's batches drawn from the mixture (optionally by DataLoader workers)."""
    batches = MixtureBatches(
        mixture,
        config.micro_batch_size,
        config.seq_len,
        accelerator.process_index,
        accelerator.num_processes,
        seed=config.seed,
        shuffle_buffer=config.shuffle_buffer,
        val_docs=config.val_docs,
        window_shuffle=config.window_shuffle,
        tokenizer=tokenizer,
        skip_tokens=skip_tokens,
    )
    return read_by_workers(config, batches, accumulation)


def resume(run: Run) -> None:
    """Continue from the checkpoint ``--resume`` names: refused if it would be another run, else restored exactly."""
    checkpoint = resolve_resume(run.config.resume, run.run_dir, run.say)
    if checkpoint is None:
        return
    # Before loading: other model shapes, data or batch settings are refused by name, not by a size mismatch.
    one_source_shards = isinstance(run.config.token_shards, str)
    shards = shards_identity(run.config.token_shards) if one_source_shards else None
    changes = check_resumable(checkpoint, run.config.to_dict(), run.accelerator.num_processes, shards,
                              run.text_tokenizer.identity())  # fmt: skip
    data_state, trainer_state = load_checkpoint(run.accelerator, checkpoint)
    if not weights_are_finite(run.raw_model, run.accelerator):
        raise NonFiniteLossError(
            f"{checkpoint} holds non-finite weights (saved by an older version without the check); resume from an "
            "earlier checkpoint with --resume PATH"
        )
    run.train_data.load_state_dict(data_state)
    # The schedule of the settings given now (each role's lr, min_lr, schedule, warmup_steps, max_steps), from the
    # saved step on.
    for optimizer, scheduler in zip(run.optimizers, run.schedulers):
        apply_schedule(scheduler, optimizer, trainer_state["step"], role_learning_rates(run.config))
    run.start_step, run.history, run.last_checkpoint = trainer_state["step"], trainer_state["history"], checkpoint
    run.commands, run.earlier_seconds = trainer_state.get("commands", []), trainer_state.get("seconds", 0.0)
    run.history.setdefault("val_bpb", [])  # a checkpoint from before bits per byte
    run.health.checkpointed(checkpoint, [loss for _, loss in run.history["train_loss"]])
    run.say(f"resumed from {checkpoint} at step {run.start_step}")
    for name, (old, new) in changes.items():
        run.say(f"  {name}: {old!r} -> {new!r}")


def evaluation_tasks(config: TrainConfig) -> tuple[list[str], dict[str, str], dict[str, int | None]]:
    """The benchmark tasks each evaluation scores, with their data and item limits: ``eval_tasks``, and HellaSwag
    where ``hellaswag_data`` names its data (its own options, as before the other tasks)."""
    names = resolve_task_names(config.eval_tasks) if config.eval_tasks else []
    data = dict(config.eval_task_data)
    limits: dict[str, int | None] = {name: config.eval_task_limit for name in names}
    if config.hellaswag_data:
        names = names if "hellaswag" in names else ["hellaswag", *names]
        data.setdefault("hellaswag", config.hellaswag_data)
        limits["hellaswag"] = config.hellaswag_limit
    return names, data, limits


def validate(run: Run, step: int) -> dict:
    """The validation loss and bits per byte; of a mixture, each source's (``sources``) with their weighted mean, and
    the training tokens drawn from each source so far, over every process (``drawn``), also kept in the history."""
    config, accelerator = run.config, run.accelerator
    if not run.mixture:
        return validation_metrics(run.model, run.val_windows, accelerator, run.eot_token_id, run.token_bytes)
    weights = {entry.label: entry.weight for entry in run.mixture}
    results = mixture_validation_metrics(run.model, run.val_windows, weights, accelerator, run.eot_token_id,
                                         run.token_bytes)  # fmt: skip
    rows = accelerator.reduce(run.train_data.drawn.to(accelerator.device).clone(), reduction="sum")
    results["drawn"] = {entry.label: int(count) * config.seq_len for entry, count in zip(run.mixture, rows.tolist())}
    curves = run.history.setdefault("val_sources", {})
    for label, figures in results["sources"].items():
        for name, value in figures.items():
            curves.setdefault(label, {}).setdefault(name, []).append((step, value))
    run.history.setdefault("drawn", []).append((step, results["drawn"]))
    return results


def by_source(results: dict) -> str:
    """A mixture's evaluation in one line: each source's validation figures and its share of the tokens drawn."""
    total = sum(results["drawn"].values())
    return " | ".join(
        f"{label} val loss {figures['val_loss']:.4f} bpb {figures['val_bpb']:.4f}, drawn "
        f"{results['drawn'][label]:,} tokens ({100 * results['drawn'][label] / max(total, 1):.1f}%)"
        for label, figures in results["sources"].items()
    )


def headline_metric(result: dict) -> str:
    """The metric a task's curve shows: acc_norm where the task has it (lm-eval's usual headline), else acc."""
    return "acc_norm" if "acc_norm" in result else "acc"


def evaluate(run: Run, step: int) -> dict:
    """Validation loss and the benchmark tasks on every process; samples, the loss curve and the log on the main
    one."""
    config, accelerator = run.config, run.accelerator
    results = validate(run, step)
    run.history["val_loss"].append((step, results["val_loss"]))
    run.history["val_bpb"].append((step, results["val_bpb"]))
    names, data, limits = evaluation_tasks(config)
    if names:
        tasks = evaluate_tasks(run.raw_model, run.tokenizer, names, data, config.eval_num_fewshot, limits,
                               batch_size=32, accelerator=accelerator)  # fmt: skip
        results["tasks"] = tasks
        curves = run.history.setdefault("tasks", {})
        for name in names:
            curves.setdefault(name, []).append((step, tasks[name][headline_metric(tasks[name])]))
    # On every process (FSDP gathers); at step 0 only from a pretrained start (random weights write noise).
    samples = generate_samples(run.raw_model, run.tokenizer, config, accelerator.device) if step or run.start else []
    if accelerator.is_main_process:
        tasks_text = "".join(
            f" | {name} {headline_metric(result)} {result[headline_metric(result)]:.4f}"
            for name, result in results.get("tasks", {}).items() if name in TASKS
        )  # fmt: skip
        if "aggregate" in results.get("tasks", {}):
            tasks_text += f" | centered acc {results['tasks']['aggregate']['centered_acc']:.4f}"
        run.say(f"eval step {step}: val loss {results['val_loss']:.4f} | val bpb {results['val_bpb']:.4f}{tasks_text}")
        if run.mixture:
            run.say(f"  by source: {by_source(results)}")
        for sample in samples:
            run.say("  sample: " + sample.replace("\n", " ")[:200])
        if samples:
            (run.run_dir / "samples.txt").write_text("\n\n".join(samples))
        if step > 0:  # one point is no curve: step 0's is drawn with the next evaluation's
            plot_training_curves(run.history, run.run_dir / "loss.png", title=plot_title(run))
    accelerator.log(tracker_scalars(results), step=step)
    if config.export_best:
        keep_if_best(run, step, results["val_loss"])
    return results


BEST_WEIGHTS = "best/model.safetensors"


def keep_if_best(run: Run, step: int, val_loss: float) -> None:
    """export_best: the weights of the evaluation with the lowest validation loss so far, in run_dir/best (written
    beside and renamed into place), and which step that was in the history (so a resumed run knows it)."""
    best = run.history.get("best")
    if best is not None and val_loss >= best[1]:
        return
    weights = run.accelerator.get_state_dict(run.model)  # on every process: FSDP gathers the shards
    if run.accelerator.is_main_process:
        path = run.run_dir / BEST_WEIGHTS
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.tmp")
        # Copies: a tied head shares the embedding's storage, which safetensors refuses to write twice.
        save_file({name: tensor.detach().cpu().clone().contiguous() for name, tensor in weights.items()}, staging)
        os.replace(staging, path)
    run.history["best"] = [step, val_loss]


def tracker_scalars(results: dict) -> dict[str, float]:
    """``eval/val_loss``, ``eval/val_bpb``, ``eval/<task>/<metric>`` (stderr and n too), ``eval/centered_acc``; a
    mixture's ``val/<source>/loss``, ``val/<source>/bpb`` and ``drawn/<source>/tokens``."""
    scalars = {f"eval/{name}": value for name, value in results.items() if name not in ("tasks", "sources", "drawn")}
    for label, figures in results.get("sources", {}).items():  # a mixture's sources
        scalars[f"val/{label}/loss"], scalars[f"val/{label}/bpb"] = figures["val_loss"], figures["val_bpb"]
        scalars[f"drawn/{label}/tokens"] = results["drawn"][label]
    for name, result in results.get("tasks", {}).items():
        if name == "aggregate":
            scalars["eval/centered_acc"] = result["centered_acc"]
            continue
        scalars.update({f"eval/{name}/{metric}": value for metric, value in result.items() if metric != "details"})
    return scalars


def evaluation_setup(config: TrainConfig) -> str:
    """How the model card's scores were made, in words."""
    names, data, limits = evaluation_tasks(config)
    sources = ", ".join(f"{name}: {data.get(name) or TASKS[name].hub[0]} (first {limits[name] or 'all'} items)"
                        for name in names)  # fmt: skip
    return f"{config.eval_num_fewshot}-shot; {sources}"


def plot_title(run: Run) -> str:
    """The run and its model's size, e.g. ``quickstart: 4 layers x 128, 1.3M parameters, on python-stdlib``."""
    model = run.raw_model.config
    parameters = sum(p.numel() for p in run.raw_model.parameters())
    size = f"{model.n_layer} layers x {model.n_embd}, {parameters / 1e6:.1f}M parameters"
    data = f"a mixture of {len(run.mixture)} sources" if run.mixture else Path(run.config.data).name
    return f"{run.run_dir.name}: {size}, on {data}"


def non_finite(run: Run, what: str) -> NonFiniteLossError:
    """The error that stops a diverged run, with a command that recovers from it (see gpt_scratch.divergence)."""
    good = run.health.last_good
    moved = quarantine_after(run.run_dir, good) if run.accelerator.is_main_process else []
    lower = lower_learning_rates(run.config)
    if good is None:
        advice = "No checkpoint was followed by a healthy step; start again with lower learning rates: "
        command = command_with(run.arguments(), lower, drop=("resume",))
    else:
        advice = f"Last good checkpoint (a healthy step followed it): {good}. Continue with lower learning rates: "
        command = command_with(run.arguments(), {"resume": "auto", **lower})
    if moved:
        advice = (f"{len(moved)} checkpoint(s) no healthy step followed are kept as {moved[0].parent}/diverged-step-*, "
                  f"where --resume auto does not look. {advice}")  # fmt: skip
    return NonFiniteLossError(f"{what}; training stopped instead of continuing on NaN. {advice}{shlex.join(command)}")


def save(run: Run, step: int) -> None:
    """A checkpoint after ``step``, never of non-finite weights (a step can make them NaN with a finite loss)."""
    if not weights_are_finite(run.raw_model, run.accelerator):
        raise non_finite(run, f"the weights became non-finite by step {step}; nothing was saved")
    state = {"history": run.history, "config": run.config.to_dict(), "tokens_seen": step * run.config.tokens_per_step,
             "tokenizer_identity": run.text_tokenizer.identity(), "commands": run.commands,
             "seconds": run.seconds(), "model_config": run.raw_model.config.to_dict()}  # fmt: skip
    if isinstance(run.config.token_shards, str):  # so that a resume recognises the same shards at another path
        state["token_shards_identity"] = shards_identity(run.config.token_shards)
    model_bytes = sum(p.numel() * p.element_size() for p in run.raw_model.parameters())  # + 2 optimizer states
    run.last_checkpoint = save_checkpoint(run.accelerator, run.run_dir, step, run.train_data.state_dict(), state,
                                          run.config.keep_checkpoints, protect=run.health.last_good,
                                          estimate=3 * model_bytes)  # fmt: skip
    run.health.checkpointed(run.last_checkpoint)


def log_line(run: Run, done: int, loss: float, norm: float, tokens_per_s: float, mfu: float | None) -> str:
    config = run.config
    eta = (config.max_steps - done) * config.tokens_per_step / tokens_per_s
    memory = f" | peak mem {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if torch.cuda.is_available() else ""
    return (
        f"step {done:>6}/{config.max_steps} | loss {loss:.4f} | lr {run.current_lr():.2e} | "
        f"grad norm {norm:.3f} | {tokens_per_s:,.0f} tok/s" + (f" | MFU {100 * mfu:.1f}%" if mfu is not None else "")
        + memory + f" | ETA {eta / 60:.1f} min"
    )  # fmt: skip


def stop_signal_of_any(accelerator: Accelerator, signal_number: int | None) -> int | None:
    """The signal any process received (one all-reduce of a scalar), so that all stop and checkpoint together."""
    received = torch.tensor([signal_number or 0], device=accelerator.device)
    torch.distributed.all_reduce(received, op=torch.distributed.ReduceOp.MAX)
    return int(received.item()) or None


@contextmanager
def stop_requests() -> Iterator[dict]:
    """SIGTERM (schedulers, spot instances) and Ctrl-C are recorded, not obeyed at once: the loop finishes its step,
    checkpoints and stops. The caller's own handlers come back afterwards (main() may run in a notebook or a test)."""
    requested = {"signal": None}
    previous = {sig: signal.signal(sig, lambda number, frame: requested.update(signal=number))
                for sig in (signal.SIGTERM, signal.SIGINT)}  # fmt: skip
    try:
        yield requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def fit(run: Run) -> dict:
    """The loop from ``start_step`` to ``max_steps``: step, NaN guard, log line, evaluation, checkpoint; stops
    cleanly on SIGTERM/SIGINT. Returns the last evaluation's results."""
    config, accelerator = run.config, run.accelerator
    run.model.train()
    device_peak = peak_flops(accelerator.device)
    flops_token = flops_per_token(run.raw_model, config.seq_len)
    results = {}
    if run.start_step == 0:  # where training starts: the first point of every curve (a fine-tune's "before")
        results = evaluate(run, 0)
    bar = tqdm(total=config.max_steps, initial=run.start_step, disable=not accelerator.is_local_main_process,
               desc="training", dynamic_ncols=True)  # fmt: skip
    interval_start, interval_tokens = time.perf_counter(), 0
    # The bar closes before an error reaches the user, so that the error is the last line they see.
    with stop_requests() as stop_requested, bar, another_process_said_at_once(bar):
        for step in range(run.start_step, config.max_steps):
            loss_sum, grad_norm = train_step(run.forward, run.model, run.train_data, run.optimizers, run.schedulers,
                                             accelerator, run.accumulation, config.grad_clip,
                                             run.eot_token_id)  # fmt: skip
            train_loss = accelerator.reduce(loss_sum, reduction="mean").item()
            if not math.isfinite(train_loss):
                raise non_finite(run, f"loss became {train_loss} at step {step + 1}")
            if grad_norm is not None and not torch.isfinite(grad_norm):
                raise non_finite(run, f"the gradient norm became {grad_norm.item()} at step {step + 1}")
            done = step + 1
            if spike := run.health.step(train_loss):
                run.say(f"WARNING: step {done}: {spike}; the checkpoint before it counts as good only once it passes")
            run.history["train_loss"].append((done, train_loss))
            bar.update(1)
            interval_tokens += config.tokens_per_step

            if done % config.log_interval == 0 or done == config.max_steps:
                tokens_per_s = interval_tokens / (time.perf_counter() - interval_start)
                mfu = (flops_token * tokens_per_s / accelerator.num_processes / device_peak) if device_peak else None
                norm = grad_norm.item() if grad_norm is not None else float("nan")
                if accelerator.is_local_main_process:
                    bar.write(log_line(run, done, train_loss, norm, tokens_per_s, mfu))
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
                stop = stop_signal_of_any(accelerator, stop)
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
    start = next(((loss, bpb) for (step, loss), (_, bpb) in zip(history["val_loss"], history["val_bpb"]) if step == 0),
                 None)  # fmt: skip
    if run.accelerator.is_main_process:
        model = GPTScratchForCausalLM(run.raw_model.config)
        model.load_state_dict(weights, strict=not config.export_best)  # the best weights: a tied head once
        model.tie_weights()
        export_dir = save_with_model_card(
            model,
            Path(config.export_dir or run.run_dir / "model"),
            run.tokenizer,
            data=describe(run.mixture) if run.mixture else config.data,
            command=run.how_it_was_made(),
            steps=config.max_steps,
            tokens_per_step=config.tokens_per_step,
            val_loss=results.get("val_loss"),
            val_bpb=results.get("val_bpb"),
            tokenizer_name=run.text_tokenizer.description,
            evaluation=results.get("tasks"),
            evaluation_setup=evaluation_setup(config),
            repo_id=config.push_to_hub,
            base_model=run.start.base_model if run.start else None,
            started_from=run.start.description if run.start else None,
            val_start=start,
            weights=exported,
            mixture=card_sources(run, results),
        )
        if exported:
            run.say(f"exported weights: {exported}")
        run.say(
            f"exported {export_dir} after {run.seconds() / 60:.1f} min of training; loss curve "
            f"{run.run_dir / 'loss.png'}"
        )
        if config.push_to_hub:
            push_to_hub(export_dir, config.push_to_hub, run.say)


def card_sources(run: Run, results: dict) -> list[dict] | None:
    """The card's table of a mixture's sources: weight, tokens drawn, and the last evaluation's figures."""
    if not run.mixture:
        return None
    return [{"label": entry.label, "weight": entry.weight, "drawn": results["drawn"][entry.label],
             **results["sources"][entry.label]} for entry in run.mixture]  # fmt: skip


def main(argv: list[str]) -> None:
    """The whole run, as ``python train.py ARGV`` does it; callable in-process (tests, notebooks): errors propagate
    as exceptions, and nothing is left held (the run lock, signal handlers) when it returns or raises."""
    started = time.perf_counter()
    with ExitStack() as cleanup:
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


class PeerLostError(RuntimeError):
    """Another process of the run is gone; the message was printed when it was found (``reported``)."""

    reported = True


def another_process_stopped(error: RuntimeError) -> str | None:
    """The one line for a collective that failed because another process of the run is gone, or None."""
    if not any(words in str(error) for words in PEER_LOST):
        return None
    reason = str(error).strip().splitlines()[0][:300]
    return (
        f"error: another process of this run stopped ({reason}), and this one cannot go on alone. The checkpoints "
        "written so far are intact (each is complete or absent): rerun the same launch command with --resume auto"
    )


@contextmanager
def another_process_said_at_once(bar) -> Iterator[None]:
    """Say that another process is gone as soon as a collective reports it, while stop_requests still holds SIGTERM:
    the launcher (torchrun) terminates the surviving processes right after one dies, and one that waited to reach
    cli() was often killed before its line was printed."""
    try:
        yield
    except RuntimeError as error:
        if (line := another_process_stopped(error)) is None or os.environ.get("GPT_SCRATCH_TRACEBACK"):
            raise
        bar.close()
        print(line, file=sys.stderr, flush=True)
        raise PeerLostError(line) from None


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
    except (*USER_ERRORS, NonFiniteLossError) as error:  # the same user errors as every other entry point
        if os.environ.get("GPT_SCRATCH_TRACEBACK"):
            raise
        raise SystemExit(f"error: {error}") from None
    except PeerLostError:
        raise SystemExit(1) from None  # its line is printed already
    except RuntimeError as error:
        if (line := another_process_stopped(error)) is None or os.environ.get("GPT_SCRATCH_TRACEBACK"):
            raise
        raise SystemExit(line) from None


if __name__ == "__main__":
    cli(sys.argv[1:])
