"""Where a run's first weights come from: ``init_from``, a pretrained model to fine-tune or continue.

    python train.py configs/finetune-gpt2.yaml --data "my-texts/*.txt"        # init_from: gpt2 (the Hub, cached)
    python train.py configs/quickstart.yaml --init_from runs/quickstart/model --data "docs/*.md" --run_dir runs/ft

It takes:

- ``gpt2`` ... ``gpt2-xl`` or any Hub id of a GPT-2 or gpt-scratch model (downloaded once into the Hugging Face
  cache, as ``from_pretrained`` does; offline, the cache serves it or the error names the id);
- a local model directory: GPT-2's format (``GPT2LMHeadModel.save_pretrained``) or an export of this project, of
  either architecture;
- a nanoGPT / build-nanogpt ``.pt`` checkpoint;
- one of this project's checkpoints (``run_dir/checkpoints/step-N``).

The architecture and the tokenizer come from the source: a model option set in the config that contradicts it, or a
``tokenizer:`` that encodes otherwise, is refused before step 1, naming both values. Only the weights are taken: the
optimizer, schedule, step and data start fresh (``--resume`` continues a run); dropout and every training setting
are the run's.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import STATE_FILE
from .configuration_gpt_scratch import GPTScratchConfig
from .data.build import prepare_tokenizer
from .model_files import check_model_directory
from .modeling_gpt_scratch import GPTScratchForCausalLM
from .tokenizer import load_tokenizer
from .tokenizer.text_tokenizer import GPT2
from .train_config import MODEL_OPTIONS, TrainConfig

TAKES = (
    "init_from takes gpt2 ... gpt2-xl or a Hub id, a model directory, a nanoGPT .pt checkpoint, or a checkpoint "
    "of this project (run_dir/checkpoints/step-N)"
)
# A model directory's tokenizer: what transformers writes for one, and the chat template beside it.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "chat_template.jinja")  # fmt: skip
# What a Hub download of a model takes: weights, config, tokenizer, code; not the other frameworks' copies.
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.py", "*.jinja", "README.md"]


@dataclass
class PretrainedStart:
    """A pretrained source's model and what the run needs to know of it."""

    model: GPTScratchForCausalLM
    tokenizer: str  # the tokenizer train.py loads: "gpt2", or a directory holding the source's own
    description: str  # what the log line and the card say the run started from
    base_model: str | None = None  # the Hub id (the card's base_model metadata); None for a local source


def _tokenizer_of(directory: Path, config: GPTScratchConfig, source: str) -> str:
    """The tokenizer a model directory was trained with: GPT-2's when its files encode as GPT-2 (or it has none, as a
    GPT-2 directory written by ``save_pretrained`` alone), else the directory's own."""
    gpt2 = load_tokenizer(GPT2)
    if not (directory / "tokenizer.json").is_file():
        if config.vocab_size != gpt2.vocab_size:
            raise ValueError(
                f"init_from {source} has no tokenizer files and a vocabulary of {config.vocab_size} tokens, not "
                f"GPT-2's {gpt2.vocab_size}; save the model with its tokenizer"
            )
        return GPT2
    own = load_tokenizer(str(directory))
    return GPT2 if own.encodes_like(gpt2) else str(directory)


def _model_directory(directory: Path, source: str) -> tuple[GPTScratchForCausalLM, str]:
    """A GPT-2-format or gpt-scratch model directory's model (fp32: the run's master weights) and tokenizer."""
    check_model_directory(directory, f"init_from {source}")  # a damaged or hostile file: one line naming it
    model_type = json.loads((directory / "config.json").read_text()).get("model_type")
    if model_type == "gpt2":
        model = GPTScratchForCausalLM.from_gpt2(str(directory), dtype=torch.float32)
    elif model_type == GPTScratchConfig.model_type:
        model = GPTScratchForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
    else:
        raise ValueError(
            f"init_from {source} is a {model_type!r} model; a run starts from GPT-2 or gpt-scratch models (GPT-2's "
            "format, an export of this project, a nanoGPT checkpoint, or a checkpoint of this project)"
        )
    return model, _tokenizer_of(directory, model.config, source)


def _hub_snapshot(repo_id: str) -> Path:
    """The Hub model's files in the local cache, downloaded the first time."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
    except Exception as error:  # offline, no such repo, no access: huggingface_hub's errors differ by cause
        reason = str(error).strip().splitlines()[0]  # whole: a cut sentence loses its advice
        raise OSError(
            f"init_from {repo_id}: could not get it from the Hugging Face Hub or its cache ({type(error).__name__}: "
            f"{reason}); run once with the network to cache it, or give a local model directory"
        ) from None


def pretrained_model(source: str) -> PretrainedStart:
    """The model ``source`` names, with its tokenizer: a checkpoint of this project, a nanoGPT ``.pt``, a local
    model directory, or a Hub id."""
    from .cli import check_local_model

    path = Path(source).expanduser()
    if path.is_dir() and (path / "trainer_state.json").is_file():
        from .export import checkpoint_model

        model, tokenizer, state = checkpoint_model(path, use="start from")
        return PretrainedStart(model, tokenizer.name, f"checkpoint {path} (step {state['step']})")
    if path.is_file():
        from .convert import from_nanogpt

        try:
            return PretrainedStart(from_nanogpt(path).float(), GPT2, f"nanoGPT checkpoint {path}")
        except ValueError as error:
            raise ValueError(f"init_from {source}: {error}. {TAKES}") from None
    if path.is_dir():
        model, tokenizer = _model_directory(path, source)
        return PretrainedStart(model, tokenizer, f"model directory {path}")
    check_local_model(source)  # ./x, /x, a/b/c, runs/x: a path that is not there, not a Hub id
    model, tokenizer = _model_directory(_hub_snapshot(source), source)
    return PretrainedStart(model, tokenizer, f"{source} (the Hugging Face Hub)", base_model=source)


def start_from(config: TrainConfig) -> PretrainedStart:
    """The run's first model, ``config.init_from``'s weights with the run's dropout, after refusing what contradicts
    the source (a model option, the tokenizer, a window longer than its context); sets ``config.tokenizer`` to the
    source's tokenizer where the config names none of its own."""
    start = pretrained_model(config.init_from)
    source = start.model.config
    set_here = {name: getattr(config, name) for name in MODEL_OPTIONS if getattr(config, name) is not None}
    contradictions = [f"{name}: {value!r} here, {getattr(source, name)!r} in the source"
                      for name, value in set_here.items() if value != getattr(source, name)]  # fmt: skip
    if contradictions:
        raise ValueError(
            f"init_from {config.init_from} sets the model's architecture, and the config contradicts it ("
            f"{'; '.join(contradictions)}); remove those keys (the source decides them) or start from scratch"
        )
    if config.seq_len > source.n_positions:
        raise ValueError(
            f"seq_len ({config.seq_len}) exceeds init_from {config.init_from}'s context (n_positions "
            f"{source.n_positions}); lower seq_len"
        )
    theirs = load_tokenizer(start.tokenizer)
    if config.tokenizer is None:  # none chosen: the source's is the run's
        config.tokenizer = start.tokenizer
    elif not load_tokenizer(config.tokenizer).encodes_like(theirs):  # chosen, gpt2 too: it must agree
        raise ValueError(
            f"tokenizer {config.tokenizer} encodes text differently from init_from {config.init_from}'s "
            f"({theirs.description}): the model's embeddings are for the source's ids. Remove tokenizer: to use "
            "the source's"
        )
    model = GPTScratchForCausalLM(with_run_dropout(source.to_dict(), config))
    model.load_state_dict(start.model.state_dict())
    start.model = model
    return start


def with_run_dropout(architecture: dict, config: TrainConfig) -> GPTScratchConfig:
    """A pretrained model's architecture (its config as a dict) with the run's dropout: a training setting."""
    dropout = {"resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.dropout}
    return GPTScratchConfig.from_dict({**architecture, **dropout})


def first_model(config: TrainConfig, checkpoint: Path | None, accelerator) -> tuple[GPTScratchForCausalLM, dict | None]:
    """The run's model before training (its weights, or the shape a resumed checkpoint's weights fill), and where it
    started (``{"description", "base_model"}`` of a pretrained source, None for random weights). Sets
    ``config.tokenizer`` when the config names none: the source's, else GPT-2's.

    A fine-tune resumed from a checkpoint is built from what the checkpoint records (its architecture, tokenizer and
    origin), as nanoGPT's ``init_from='resume'`` is: the source is read only at step 0, so a job requeued on an
    offline node, or after the source directory was moved, resumes all the same.
    """
    if config.init_from and checkpoint is not None:
        state = json.loads((checkpoint / STATE_FILE).read_text())
        config.tokenizer = config.tokenizer or state["config"].get("tokenizer") or GPT2
        return GPTScratchForCausalLM(with_run_dropout(state["model_config"], config)), state.get("origin")
    if config.init_from:
        choose = config.tokenizer is None
        start = start_from(config)
        if choose and config.tokenizer != GPT2:  # the source's own: a copy in the run, which resumes without it
            config.tokenizer = keep_tokenizer(config.tokenizer, Path(config.run_dir) / "tokenizer", accelerator)
        return start.model, {"description": start.description, "base_model": start.base_model}
    config.tokenizer = config.tokenizer or GPT2
    prepare_tokenizer(config, accelerator)
    return GPTScratchForCausalLM(config.model_config()), None


def keep_tokenizer(source: str, directory: Path, accelerator) -> str:
    """The tokenizer files of a pretrained source copied into the run, byte for byte (the same identity: shards made
    with the source's tokenizer are still its), by the main process while the others wait: a resume, or the export
    of a checkpoint, reads them there and not from the source."""
    with accelerator.main_process_first():
        if accelerator.is_main_process and not (directory / "tokenizer.json").is_file():
            directory.mkdir(parents=True, exist_ok=True)
            for name in TOKENIZER_FILES:
                if (Path(source) / name).is_file():
                    shutil.copy2(Path(source) / name, directory / name)
    return str(directory)
