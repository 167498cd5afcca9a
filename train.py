"""Train a GPT from scratch, on one CPU or many GPUs, and export a Hugging Face model directory.

    python train.py configs/quickstart.yaml                      # 2 CPU cores, minutes, no download
    python train.py configs/gpt2-124m.yaml --lr 3e-4              # any config field can be overridden
    accelerate launch --multi_gpu --num_processes 8 train.py configs/gpt2-124m.yaml
    torchrun --nproc_per_node 8 train.py configs/gpt2-124m.yaml
    python train.py configs/quickstart.yaml --resume auto         # continue a killed run exactly

Read top to bottom: config -> accelerator -> model -> data -> optimizer -> (resume) -> loop (micro-steps with
gradient accumulation, clipping, logging, evaluation, checkpoints) -> export. Accelerate owns devices, processes,
mixed precision and gradient synchronisation; everything else is here or in a gpt_scratch module named after it.
"""

import atexit
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from gpt_scratch import GPTScratchForCausalLM, gpt2_tokenizer, save_model_dir
from gpt_scratch.checkpoint import check_resumable, load_checkpoint, resolve_resume, save_checkpoint
from gpt_scratch.cpu_loss import use_lean_cpu_loss
from gpt_scratch.data import (
    PackedBatches,
    TextSource,
    TokenShardBatches,
    WorkerBatches,
    token_windows,
    validation_tokens,
)
from gpt_scratch.hellaswag import evaluate_hellaswag, load_rows
from gpt_scratch.launch import launch_mismatch
from gpt_scratch.plots import plot_training_curves
from gpt_scratch.run_lock import RunLock
from gpt_scratch.saving import write_model_card
from gpt_scratch.train_config import parse_args
from gpt_scratch.training import (
    apply_schedule,
    build_optimizer,
    flops_per_token,
    generate_samples,
    lr_multiplier,
    peak_flops,
    train_step,
    validation_loss,
    weights_are_finite,
)

# A run stopped by SIGTERM (preemption) or SIGINT exits with 128 + the signal number (143, 130) after a complete
# checkpoint, as a process killed by that signal would: schedulers read it as "preempted, requeue", not "done".
STOPPED_BY_SIGNAL_EXIT = 128


class NonFiniteLossError(RuntimeError):
    pass


def repo_relative(path: str | None) -> str | None:
    """A relative path that is not under the working directory, looked up beside this script (the bundled data)."""
    if path is None or Path(path).is_absolute() or Path(path).exists():
        return path
    beside = Path(__file__).resolve().parent / path
    return str(beside) if beside.exists() else path


def main(argv: list[str]) -> None:
    config = parse_args(argv)
    config.hellaswag_data = repo_relative(config.hellaswag_data)
    if config.hellaswag_data and Path(config.hellaswag_data).suffix in (".jsonl", ".json", ".parquet"):
        load_rows(config.hellaswag_data)  # a wrong path or a bad row fails now, not after eval_interval steps
    run_dir = Path(config.run_dir)

    # --- accelerator: devices, processes, mixed precision -------------------------------------------------------
    accelerator = Accelerator(
        # On a machine without GPUs, cpu=True is what makes Accelerate join the processes torchrun started (gloo).
        cpu=not torch.cuda.is_available(),
        mixed_precision=config.mixed_precision,
        # The schedule counts optimizer steps; by default Accelerate would step it once per process per step.
        step_scheduler_with_optimizer=False,
        log_with=None if config.report_to == "none" else config.report_to,
        project_dir=str(run_dir),
    )
    accumulation = config.gradient_accumulation_steps(accelerator.num_processes)
    set_seed(config.seed)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls on Ampere and newer
        torch.backends.cudnn.allow_tf32 = True
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(run_dir).acquire()  # before anything writes here: a second run on this run_dir stops now
        atexit.register(lock.release)  # on any exit but kill -9, whose lock the next run finds stale
        if lock.note:
            print(lock.note)
    if config.report_to != "none":
        # wandb keeps its files in the run directory (offline runs sync from there), not in the working directory.
        tracker_kwargs = {"wandb": {"dir": str(run_dir)}}
        accelerator.init_trackers(run_dir.name, config=config.hyperparameters(), init_kwargs=tracker_kwargs)
    say = accelerator.print
    if mismatch := launch_mismatch(accelerator.num_processes):
        say(f"WARNING: {mismatch}")

    # --- model -----------------------------------------------------------------------------------------------
    model = GPTScratchForCausalLM(config.model_config())
    n_params = sum(p.numel() for p in model.parameters())
    say(
        f"model: {config.model} {n_params / 1e6:.2f}M parameters | processes {accelerator.num_processes} | "
        f"micro-batch {config.micro_batch_size}x{config.seq_len} | accumulation {accumulation} | "
        f"{config.tokens_per_step:,} tokens/step | device {accelerator.device}"
    )
    tokenizer = gpt2_tokenizer(model.config.n_positions)
    # document_mask: <|endoftext|> opens each packed document; attention stays within documents.
    eot_token_id = tokenizer.eos_token_id if config.document_mask else None

    # --- data ------------------------------------------------------------------------------------------------
    source = TextSource(config.data, config.data_name, config.data_split, config.text_column)
    held_out = validation_tokens(source, config.val_docs)
    val_windows = token_windows(held_out, config.seq_len, config.micro_batch_size)[: config.val_batches]
    if config.token_shards:
        # The first val_docs documents open shard 0 (shards keep the source's order): start training after them.
        train_data = TokenShardBatches(
            config.token_shards,
            config.micro_batch_size,
            config.seq_len,
            accelerator.process_index,
            accelerator.num_processes,
            start_token=len(held_out),
            source=source,  # the shards must be of the run's data: validation reads the data itself
        )
    else:
        train_data = PackedBatches(
            source,
            config.micro_batch_size,
            config.seq_len,
            accelerator.process_index,
            accelerator.num_processes,
            seed=config.seed,
            shuffle_buffer=config.shuffle_buffer,
            val_docs=config.val_docs,
        )
        if config.data_workers:  # tokenize in worker processes, off the training loop; resumes exactly
            train_data = WorkerBatches(train_data, config.data_workers)

    # --- optimizer and schedule ------------------------------------------------------------------------------
    optimizer = build_optimizer(model, config, accelerator.device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, config))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    raw_model = accelerator.unwrap_model(model)
    # The model traces as one graph (tests/test_compile.py); under DDP, Accelerate's wrapper splits it at gradient
    # buckets, by design. Evaluation and sampling call the plain model.
    forward = torch.compile(model) if config.compile else model
    if use_lean_cpu_loss(raw_model, accelerator.device, config.compile):
        say("CPU: lean cross-entropy (gpt_scratch.cpu_loss), same values and gradients as the standard loss")

    # --- resume ----------------------------------------------------------------------------------------------
    start_step, history = 0, {"train_loss": [], "val_loss": [], "hellaswag": []}
    checkpoint = resolve_resume(config.resume, run_dir)
    if checkpoint is not None:
        # Before loading: other model shapes, data or batch settings are refused by name, not by a size mismatch.
        changes = check_resumable(checkpoint, config.to_dict(), accelerator.num_processes)
        data_state, trainer_state = load_checkpoint(accelerator, checkpoint)
        if not weights_are_finite(raw_model):
            raise NonFiniteLossError(
                f"{checkpoint} holds non-finite weights (saved by an older version without the check); resume from "
                "an earlier checkpoint with --resume PATH"
            )
        train_data.load_state_dict(data_state)
        apply_schedule(
            scheduler, optimizer, trainer_state["step"], config.lr
        )  # lr, min_lr, warmup, max_steps as set now
        start_step, history = trainer_state["step"], trainer_state["history"]
        say(f"resumed from {checkpoint} at step {start_step}")
        for name, (old, new) in changes.items():
            say(f"  {name}: {old!r} -> {new!r}")

    # SIGTERM (schedulers, spot instances) and Ctrl-C: finish the step, checkpoint, stop.
    stop_requested = {"signal": None}
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, frame: stop_requested.update(signal=number))

    def checkpoint_now(step: int) -> Path:
        if not weights_are_finite(raw_model):  # a step can turn weights to NaN with a finite loss: never save them
            raise NonFiniteLossError(
                f"the weights became non-finite by step {step}; nothing was saved. Last good checkpoint (verified "
                f"finite): {last_checkpoint or 'none'}. Lower lr (now {config.lr}) or raise warmup_steps, then resume "
                f"with --resume {last_checkpoint or 'auto'} --lr LOWER"
            )
        state = {"history": history, "config": config.to_dict(), "tokens_seen": step * config.tokens_per_step}
        return save_checkpoint(accelerator, run_dir, step, train_data.state_dict(), state, config.keep_checkpoints)

    def evaluate(step: int) -> dict:
        results = {"val_loss": validation_loss(model, val_windows, accelerator, eot_token_id)}
        history["val_loss"].append((step, results["val_loss"]))
        if config.hellaswag_data:
            hs = evaluate_hellaswag(
                raw_model,
                tokenizer,
                config.hellaswag_data,
                batch_size=32,
                limit=config.hellaswag_limit,
                accelerator=accelerator,
            )
            results["hellaswag"] = hs
            history["hellaswag"].append((step, hs["acc_norm"]))
        if accelerator.is_main_process:
            samples = generate_samples(raw_model, tokenizer, config, accelerator.device)
            hs_text = f" | hellaswag acc_norm {results['hellaswag']['acc_norm']:.4f}" if "hellaswag" in results else ""
            say(f"eval step {step}: val loss {results['val_loss']:.4f}{hs_text}")
            for sample in samples:
                say("  sample: " + sample.replace("\n", " ")[:200])
            (run_dir / "samples.txt").write_text("\n\n".join(samples))
            plot_training_curves(history, run_dir / "loss.png", title=f"{config.model} on {config.data}")
        accelerator.log(
            {f"eval/{k}": v if not isinstance(v, dict) else v["acc_norm"] for k, v in results.items()}, step=step
        )
        return results

    # --- the loop --------------------------------------------------------------------------------------------
    model.train()
    device_peak = peak_flops(accelerator.device)
    flops_token = flops_per_token(raw_model, config.seq_len)
    last_checkpoint = checkpoint
    bar = tqdm(
        total=config.max_steps,
        initial=start_step,
        disable=not accelerator.is_local_main_process,
        desc="training",
        dynamic_ncols=True,
    )
    interval_start, interval_tokens, run_start = time.perf_counter(), 0, time.perf_counter()
    results = {}
    for step in range(start_step, config.max_steps):
        loss_sum, grad_norm = train_step(
            forward, model, train_data, optimizer, scheduler, accelerator, accumulation, config.grad_clip, eot_token_id
        )
        train_loss = accelerator.reduce(loss_sum, reduction="mean").item()
        norm_finite = grad_norm is None or bool(torch.isfinite(grad_norm))
        if not math.isfinite(train_loss) or not norm_finite:
            what = f"loss became {train_loss}" if not math.isfinite(train_loss) else "the gradient norm became inf/nan"
            raise NonFiniteLossError(
                f"{what} at step {step + 1}; training stopped instead of continuing on NaN. Last good checkpoint "
                f"(verified finite): {last_checkpoint or 'none'}. Lower lr (now {config.lr}) or raise warmup_steps, "
                f"then resume with --resume {last_checkpoint or 'auto'} --lr LOWER"
            )
        history["train_loss"].append((step + 1, train_loss))
        bar.update(1)
        interval_tokens += config.tokens_per_step

        done = step + 1
        if done % config.log_interval == 0 or done == config.max_steps:
            elapsed = time.perf_counter() - interval_start
            tokens_per_s = interval_tokens / elapsed
            eta = (config.max_steps - done) * config.tokens_per_step / tokens_per_s
            mfu = (flops_token * tokens_per_s / accelerator.num_processes / device_peak) if device_peak else None
            norm = grad_norm.item() if grad_norm is not None else float("nan")
            line = (
                f"step {done:>6}/{config.max_steps} | loss {train_loss:.4f} | lr {scheduler.get_last_lr()[0]:.2e} | "
                f"grad norm {norm:.3f} | {tokens_per_s:,.0f} tok/s"
                + (f" | MFU {100 * mfu:.1f}%" if mfu is not None else "")
                + (
                    f" | peak mem {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
                    if torch.cuda.is_available()
                    else ""
                )
                + f" | ETA {eta / 60:.1f} min"
            )
            if accelerator.is_local_main_process:
                bar.write(line)
            accelerator.log(
                {
                    "train/loss": train_loss,
                    "train/lr": scheduler.get_last_lr()[0],
                    "train/grad_norm": norm,
                    "train/tokens_per_s": tokens_per_s,
                    **({"train/mfu": mfu} if mfu else {}),
                },
                step=done,
            )
            interval_start, interval_tokens = time.perf_counter(), 0
        if done % config.eval_interval == 0 or done == config.max_steps:
            results = evaluate(done)
        if done % config.checkpoint_interval == 0 or done == config.max_steps or stop_requested["signal"]:
            last_checkpoint = checkpoint_now(done)
        if stop_requested["signal"]:
            say(
                f"stopped by signal {stop_requested['signal']} after step {done}; checkpoint {last_checkpoint}. "
                f"Continue with: python train.py {' '.join(shlex.quote(a) for a in argv)} --resume auto"
            )
            accelerator.end_training()
            raise SystemExit(STOPPED_BY_SIGNAL_EXIT + stop_requested["signal"])
    bar.close()

    # --- export ----------------------------------------------------------------------------------------------
    if not results:  # resumed after the last step: evaluate what we have
        results = evaluate(config.max_steps)
    if accelerator.is_main_process:
        export_dir = Path(config.export_dir or run_dir / "model")
        save_model_dir(raw_model, export_dir, tokenizer)
        info = {
            "name": export_dir.name,
            "repo_id": config.push_to_hub or str(export_dir),
            "config": raw_model.config.to_dict(),
            "parameters": n_params,
            "data": config.data,
            "tokens_seen": config.max_steps * config.tokens_per_step,
            "steps": config.max_steps,
            "tokens_per_step": config.tokens_per_step,
            "val_loss": results.get("val_loss"),
            "hellaswag": results.get("hellaswag"),
            "hellaswag_data": config.hellaswag_data,
            "command": "python train.py " + " ".join(shlex.quote(a) for a in argv),
        }
        write_model_card(export_dir, info)
        minutes = (time.perf_counter() - run_start) / 60
        say(f"exported {export_dir} after {minutes:.1f} min; loss curve {run_dir / 'loss.png'}")
        if config.push_to_hub:
            push(export_dir, config.push_to_hub, say)
    accelerator.end_training()


def push(export_dir: Path, repo_id: str, say) -> None:
    """Publish the exported directory; when the Hub is unreachable, say so and keep the local export."""
    from huggingface_hub import HfApi

    try:
        HfApi().create_repo(repo_id, exist_ok=True)
        HfApi().upload_folder(folder_path=str(export_dir), repo_id=repo_id)
        say(f"pushed to https://huggingface.co/{repo_id}")
    except Exception as error:  # network, auth or offline mode: the run itself succeeded
        say(
            f"could not push to the Hub ({type(error).__name__}: {error}); the model is intact in {export_dir}. "
            f"Push it later with: huggingface-cli upload {repo_id} {export_dir}"
        )


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except torch.cuda.OutOfMemoryError as error:
        raise SystemExit(
            f"CUDA out of memory ({error}). Lower --micro_batch_size (gradient accumulation keeps tokens_per_step), "
            "or --seq_len, or use bf16 (--mixed_precision bf16)"
        ) from None
    except (ValueError, FileNotFoundError, ConnectionError, NonFiniteLossError) as error:
        if os.environ.get("GPT_SCRATCH_TRACEBACK"):
            raise
        raise SystemExit(f"error: {error}") from None
