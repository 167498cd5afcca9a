"""Write a complete, self-contained model directory: all that the Auto classes and pipeline need."""

import os
import shutil
import uuid
from pathlib import Path

from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from .tokenizer import gpt2_tokenizer


def default_generation_config(model: PreTrainedModel) -> GenerationConfig:
    """Generation defaults with eos and pad set, so ``generate`` needs no arguments and prints no warning."""
    config = model.config
    pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
    return GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=pad)


def save_model_dir(
    model: PreTrainedModel, out_dir: str | os.PathLike, tokenizer: PreTrainedTokenizerBase | None = None
) -> Path:
    """Save model (config with ``auto_map``, code, safetensors, generation config) and tokenizer to ``out_dir``.

    The directory is written beside its destination and renamed into place, so a crash never leaves a half-written
    model where a complete one is expected; an existing directory at ``out_dir`` is replaced.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        model.generation_config = default_generation_config(model)
        model.save_pretrained(staging)
        (tokenizer or gpt2_tokenizer(model.config.n_positions)).save_pretrained(staging)
        if out_dir.exists():
            retired = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
            out_dir.rename(retired)
            staging.rename(out_dir)
            shutil.rmtree(retired)
        else:
            staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
