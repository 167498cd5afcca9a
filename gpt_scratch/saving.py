"""Write a complete, self-contained model directory: all that the Auto classes and pipeline need."""

import json
import os
import shutil
import uuid
from pathlib import Path

from safetensors import SafetensorError
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from .checksum import file_digest
from .storage import holds_working_directory, write_failure
from .tokenizer import gpt2_tokenizer
from .tokenizer.files import save_tokenizer


def default_generation_config(model: PreTrainedModel) -> GenerationConfig:
    """Generation defaults with eos and pad set, so ``generate`` needs no arguments and prints no warning. The model's
    own stop tokens are kept (a chat model stops at the end of a turn too)."""
    config = model.config
    pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
    own = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos = own if isinstance(own, list) and config.eos_token_id in own else config.eos_token_id
    return GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=eos, pad_token_id=pad)


# What proves a directory is an export of this project, and so may be replaced by the next one: a list of the files
# the export wrote, each with its size and checksum (BLAKE2b, as checkpoints record theirs), written last
# (``move_into_place``). A directory without it (a model the user saved or downloaded, whose card starts with ``---``
# like ours), or whose files are not exactly those (a file added, edited or removed since), is refused: only what the
# project wrote and can prove it wrote is replaced.
EXPORT_MARKER = ".gpt-scratch-export.json"


def written_files(directory: Path) -> dict[str, dict]:
    """Each file in ``directory`` (not the marker) with its size and checksum: what an export's marker records."""
    return {path.name: {"bytes": path.stat().st_size, "blake2b": file_digest(path)}
            for path in sorted(directory.iterdir()) if path.name != EXPORT_MARKER}  # fmt: skip


def mark_as_export(directory: Path) -> None:
    """Record what the export wrote in ``directory`` (complete, not yet renamed into place)."""
    if others := [path.name for path in directory.iterdir() if path.is_dir()]:
        raise RuntimeError(f"an export wrote directories it should not have: {others}")  # a bug, not a user mistake
    marker = {"written_by": "gpt-scratch", "files": written_files(directory)}
    (directory / EXPORT_MARKER).write_text(json.dumps(marker, indent=1) + "\n")


def earlier_export_problem(directory: Path) -> str | None:
    """Why ``directory`` (which exists and holds something) is not provably an earlier export, or None."""
    held = sorted(p.name + ("/" if p.is_dir() else "") for p in directory.iterdir() if p.name != EXPORT_MARKER)
    shown = ", ".join(held[:4]) + (f" and {len(held) - 4} more" if len(held) > 4 else "")
    if "checkpoints/" in held:
        return f"{directory} is a run directory (it holds {shown})"
    try:
        recorded = json.loads((directory / EXPORT_MARKER).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return (
            f"{directory} holds {shown} that no export of this project wrote (no {EXPORT_MARKER}: a model you saved "
            "or downloaded, or your own files)"
        )
    if any(p.is_dir() for p in directory.iterdir()):
        return f"{directory} holds directories an export never writes ({shown})"
    now = written_files(directory)
    changed = sorted(name for name in set(now) | set(recorded) if now.get(name) != recorded.get(name))
    if changed:
        return f"{', '.join(changed)} in {directory} changed since it was exported"
    return None


def export_target_problem(out_dir: str | os.PathLike) -> str | None:
    """Why ``out_dir`` must not be replaced by an exported model, or None: it is new, empty, or an earlier export.

    An export replaces its target whole (so that no file of an older model survives beside the new one), so a run
    directory, a directory of the user's files, or the working directory given as the target would be deleted.
    """
    out_dir = Path(out_dir)
    if holds_working_directory(out_dir):
        return f"{out_dir} is the working directory or holds it"
    if not out_dir.exists():
        return None
    if not out_dir.is_dir():
        return f"{out_dir} is a file"
    if not any(out_dir.iterdir()):
        return None
    return earlier_export_problem(out_dir)


def check_export_target(out_dir: str | os.PathLike) -> None:
    """Refuse, before any work, an export target whose replacement would delete what is not a model."""
    if problem := export_target_problem(out_dir):
        raise ValueError(
            f"cannot export into {out_dir}: {problem}, and an export replaces its target whole. Choose a new or "
            f"empty directory, e.g. {Path(out_dir) / 'model'}, or remove {out_dir} yourself if it may go"
        )


def save_model_dir(
    model: PreTrainedModel,
    out_dir: str | os.PathLike,
    tokenizer: PreTrainedTokenizerBase | None = None,
    card: dict | None = None,
) -> Path:
    """Save model (config with ``auto_map``, code, safetensors, generation config) and tokenizer to ``out_dir``.

    The directory is written beside its destination and renamed into place, so a crash never leaves a half-written
    model where a complete one is expected. An existing model directory at ``out_dir`` is replaced; anything else
    there is refused (``check_export_target``). ``card``: what ``write_model_card`` says of the model, if it has one.
    """
    out_dir = Path(out_dir)
    check_export_target(out_dir)
    staging = staging_dir(out_dir)
    try:
        model.generation_config = default_generation_config(model)
        try:
            model.save_pretrained(staging)
            save_tokenizer(tokenizer or gpt2_tokenizer(model.config.n_positions), staging)
        except (OSError, RuntimeError, SafetensorError) as error:  # a full disk, in each library's words
            needed = sum(p.numel() * p.element_size() for p in model.parameters())
            elsewhere = "export elsewhere (export_dir); the run's checkpoints are intact"
            what = "the model" if out_dir.name == "model" else f"the model {out_dir.name}"
            raise write_failure(error, out_dir.parent, needed, what, f"Free space there, or {elsewhere}",
                                f"Make it writable, or {elsewhere}") from None  # fmt: skip
        if card is not None:
            write_model_card(staging, {"name": out_dir.name, **card})
        move_into_place(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def staging_dir(out_dir: Path) -> Path:
    """Where a directory is written before it is renamed to ``out_dir``: beside it, on the same filesystem."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")


def move_into_place(staging: Path, out_dir: Path) -> None:
    """Rename the complete ``staging`` to ``out_dir``, replacing an earlier export there: checked before any work,
    and again now (a long run exports hours after it began), so a directory saved there meanwhile is never lost."""
    mark_as_export(staging)
    check_export_target(out_dir)
    if out_dir.exists():
        retired = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
        out_dir.rename(retired)
        staging.rename(out_dir)
        shutil.rmtree(retired)
    else:
        staging.rename(out_dir)


def architecture(config: dict) -> str:
    """The block design a config holds, in words (the card must describe this model, not GPT-2's default)."""
    rotary = config.get("position_embedding_type") == "rope"
    parts = [
        f"pre-{'RMSNorm' if config.get('norm_type') == 'rmsnorm' else 'LayerNorm'} blocks",
        f"rotary positions (base {config['rope_theta']:g})" if rotary else "learned positions",
        f"{config['activation_function']} MLP",
    ]
    if config.get("qk_norm"):
        parts.append("QK-norm")
    if config.get("final_logit_softcapping"):
        parts.append(f"logits soft-capped at {config['final_logit_softcapping']:g}")
    if config.get("bias") is False:
        parts.append("no biases")
    parts.append("LM head tied to the embedding" if config.get("tie_word_embeddings", True) else "untied LM head")
    return ", ".join(parts)


def evaluation_table(results: dict, setup: str) -> list[str]:
    """The card's results: one row per task and metric, as lm-evaluation-harness prints them."""
    lines = ["## Evaluation", "", f"Scored as lm-evaluation-harness scores each task ({setup}).", "",
             "| task | metric | value | stderr | n |", "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, result in results.items():
        if name == "aggregate":
            continue
        for metric in ("acc", "acc_norm", "perplexity"):
            if metric in result:
                stderr = result.get(f"{metric}_stderr")
                shown = "" if stderr is None else f"{stderr:.4f}"
                lines.append(f"| {name} | {metric} | {result[metric]:.4f} | {shown} | {result['n']} |")
    if "aggregate" in results:
        lines.append(f"| mean of {results['aggregate']['tasks']} tasks | centered acc | "
                     f"{results['aggregate']['centered_acc']:.4f} | | |")  # fmt: skip
    return lines


def core_table(core: dict) -> list[str]:
    """CORE's tasks, each one's accuracy and its accuracy centred on chance, and CORE, beside GPT-2 1.5B's."""
    lines = ["## CORE", "", "DCLM's CORE score, as nanochat computes it (each task's accuracy centred on its random "
             "baseline, averaged): GPT-2 1.5B scores 0.256525, the line nanochat's \"time to GPT-2\" races to.", "",
             "| task | accuracy | centred | items |", "| --- | --- | --- | --- |"]  # fmt: skip
    for label, task in core["tasks"].items():
        lines.append(f"| {label} | {task['acc']:.4f} | {task['centered']:.4f} | {task['n']} |")
    lines.append(f"| **CORE** | | **{core['core']:.4f}** | |")
    return lines


def mixture_table(sources: list[dict]) -> list[str]:
    """A mixture's sources: each one's weight, the training tokens drawn from it (the realised share beside the
    weight), and its final validation figures on its own held-out documents."""
    total = sum(source["drawn"] for source in sources) or 1
    lines = ["| source | weight | tokens drawn | share drawn | validation loss | bits per byte |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for source in sources:
        bpb = f"{source['val_bpb']:.4f}" if source.get("val_bpb") is not None else "-"  # none of a chat's answers
        figures = f"{source['val_loss']:.4f} | {bpb}"
        lines.append(f"| {source['label']} | {source['weight']:.4f} | {source['drawn']:,} | "
                     f"{source['drawn'] / total:.4f} | {figures} |")  # fmt: skip
    return lines


def write_model_card(out_dir: str | Path, info: dict) -> Path:
    """A README.md for the Hub: what the model is, what it was trained on, how well it does, how it was made."""
    config = info["config"]
    # The Hub's convention for a derived model: its parent in the metadata (a Hub id; a local start is in the text).
    parent = [f"base_model: {info['base_model']}", "base_model_relation: finetune"] if info.get("base_model") else []
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [gpt2, gpt-scratch, custom_code]",
        *parent,
        "---",
        f"# {info.get('name', Path(out_dir).name)}",
        "",
        "A GPT-2-style decoder trained with gpt-scratch, a from-scratch GPT-2 that is a first-class transformers",
        "model. Its code travels with the weights, so it loads with `trust_remote_code=True`:",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f'model = AutoModelForCausalLM.from_pretrained("{info.get("repo_id", "PATH")}", trust_remote_code=True)',
        f'tokenizer = AutoTokenizer.from_pretrained("{info.get("repo_id", "PATH")}", trust_remote_code=True)',
        "```",
        "",
        "## Architecture",
        f"- {config['n_layer']} layers, {config['n_head']} heads, width {config['n_embd']}, context "
        f"{config['n_positions']} tokens, vocabulary {config['vocab_size']} ({info.get('tokenizer') or 'GPT-2 BPE'})",
        f"- {info['parameters']:,} parameters; {architecture(config)}",
        "",
        "## Training",
        *([f"- started from: {info['started_from']}"] if info.get("started_from") else []),
        f"- data: {info['data']}",
    ]
    if info.get("steps"):
        lines.append(
            f"- tokens seen: {info['tokens_seen']:,} ({info['steps']} steps of {info['tokens_per_step']:,} tokens)"
        )
    if info.get("val_start") is not None:
        loss, bpb = info["val_start"]
        bpb = f", {bpb:.4f} bits per byte" if bpb is not None else ""
        lines.append(f"- validation loss at the start (step 0): {loss:.4f} nats per token{bpb}")
    if info.get("val_loss") is not None:
        bpb = f", {info['val_bpb']:.4f} bits per byte" if info.get("val_bpb") is not None else ""
        lines.append(f"- final validation loss: {info['val_loss']:.4f} nats per token{bpb}")
    if info.get("weights"):
        lines.append(f"- weights: {info['weights']}")
    if info.get("mixture"):
        lines += ["", *mixture_table(info["mixture"])]
    if info.get("evaluation"):
        lines += ["", *evaluation_table(info["evaluation"], info.get("evaluation_description", ""))]
    if info.get("core"):
        lines += ["", *core_table(info["core"])]
    if info.get("chat_template"):
        lines += ["", "## Chat", "",
                  "A chat model: its losses above count the answers only. `tokenizer.apply_chat_template(messages, "
                  "add_generation_prompt=True)` renders a conversation with this template (`chat_template.jinja`), "
                  "and `generate()` stops at the end of the turn:",
                  "", "```jinja", info["chat_template"], "```"]  # fmt: skip
    lines += ["", "## How it was made", "```bash", info.get("command", ""), "```", ""]
    path = Path(out_dir) / "README.md"
    path.write_text("\n".join(lines))
    return path


def save_with_model_card(
    model: PreTrainedModel,
    out_dir: str | os.PathLike,
    tokenizer: PreTrainedTokenizerBase | None,
    *,
    data: str,
    command: str,
    steps: int | None = None,
    tokens_per_step: int | None = None,
    val_loss: float | None = None,
    val_bpb: float | None = None,
    tokenizer_name: str | None = None,
    evaluation: dict | None = None,
    evaluation_description: str = "",
    repo_id: str | None = None,
    base_model: str | None = None,
    started_from: str | None = None,
    val_start: tuple[float, float | None] | None = None,
    weights: str | None = None,
    mixture: list[dict] | None = None,
    chat_template: str | None = None,
    core: dict | None = None,
) -> Path:
    """``save_model_dir`` plus the model card, whatever made the model (training, a checkpoint, a conversion).

    A fine-tune's card names what it ``started_from`` (and its Hub ``base_model``), the validation figures at the
    start (``val_start``: loss, bits per byte) beside the final ones, and which ``weights`` it holds when not the
    last step's. A mixture's card has a table of its sources (``mixture``: label, weight, drawn tokens, val_loss,
    val_bpb each)."""
    out_dir = Path(out_dir)
    info = {
        # A run's export is run_dir/model: the run names the model, not "model".
        "name": out_dir.resolve().parent.name if out_dir.name == "model" else out_dir.name,
        "repo_id": repo_id or str(out_dir),
        "config": model.config.to_dict(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": data,
        "steps": steps,
        "tokens_per_step": tokens_per_step,
        "tokens_seen": steps * tokens_per_step if steps and tokens_per_step else None,
        "val_loss": val_loss,
        "val_bpb": val_bpb,
        "tokenizer": tokenizer_name,
        "evaluation": evaluation,
        "evaluation_description": evaluation_description,
        "command": command,
        "base_model": base_model,
        "started_from": started_from,
        "val_start": val_start,
        "weights": weights,
        "mixture": mixture,
        "chat_template": chat_template,
        "core": core,
    }
    return save_model_dir(model, out_dir, tokenizer, card=info)


def push_to_hub(out_dir: str | os.PathLike, repo_id: str, say=print) -> bool:
    """Publish an exported directory (without the export's marker, which is this machine's business); when the Hub is
    unreachable or refuses, say so and keep the local export. Whether it was pushed."""
    from huggingface_hub import HfApi

    try:
        HfApi().create_repo(repo_id, exist_ok=True)
        HfApi().upload_folder(folder_path=str(out_dir), repo_id=repo_id, ignore_patterns=[EXPORT_MARKER])
    except Exception as error:  # network, auth or offline mode: the export itself succeeded
        say(
            f"could not push to the Hub ({type(error).__name__}: {error}); the model is intact in {out_dir}. "
            f"Push it later with: hf upload {repo_id} {out_dir}"
        )
        return False
    say(f"pushed to https://huggingface.co/{repo_id}")
    return True
