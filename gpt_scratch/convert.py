"""GPT-2 weights in and out: map ``transformers.GPT2LMHeadModel`` configs and state dicts to ours and back.

GPT-2 stores its projections as ``Conv1D`` with weight shape (in, out); ours are ``nn.Linear`` with (out, in), so
those four weights per block are transposed here, once, and nowhere else.
"""

from typing import Any

import torch
from transformers import GPT2Config

from .configuration_gpt_scratch import GPTScratchConfig

# Weights that GPT-2 keeps as Conv1D (in, out) and we keep as Linear (out, in).
_TRANSPOSED_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Config fields that mean the same thing under the same name in both configs.
_SHARED_CONFIG_FIELDS = (
    "vocab_size",
    "n_positions",
    "n_embd",
    "n_layer",
    "n_head",
    "n_inner",
    "activation_function",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "layer_norm_epsilon",
    "initializer_range",
    "bos_token_id",
    "eos_token_id",
    "tie_word_embeddings",
)
# GPT-2 options that change the computation in ways our model does not implement.
_UNSUPPORTED_GPT2_OPTIONS = {
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "add_cross_attention": False,
}


def _is_transposed(key: str) -> bool:
    return key.endswith(_TRANSPOSED_SUFFIXES)


def config_from_gpt2(gpt2_config: GPT2Config, **overrides: Any) -> GPTScratchConfig:
    """Our config for a GPT-2 config; refuses GPT-2 options our model cannot reproduce exactly."""
    for option, required in _UNSUPPORTED_GPT2_OPTIONS.items():
        if getattr(gpt2_config, option, required) != required:
            raise ValueError(
                f"GPT-2 config has {option}={getattr(gpt2_config, option)!r}; only {required} is supported"
            )
    fields = {name: getattr(gpt2_config, name) for name in _SHARED_CONFIG_FIELDS}
    fields["pad_token_id"] = (
        gpt2_config.pad_token_id if gpt2_config.pad_token_id is not None else fields["eos_token_id"]
    )
    return GPTScratchConfig(**{**fields, **overrides})


def config_to_gpt2(config: GPTScratchConfig) -> GPT2Config:
    """A GPT-2 config for ours; refuses what GPT-2 cannot represent."""
    if not config.bias:
        raise ValueError("GPT-2 has biases in every Linear and LayerNorm; a model with bias=False cannot be exported")
    if not config.tie_word_embeddings:
        raise ValueError("GPT-2 ties lm_head to wte; a model with tie_word_embeddings=False cannot be exported")
    return GPT2Config(**{name: getattr(config, name) for name in _SHARED_CONFIG_FIELDS}, pad_token_id=None)


def state_dict_from_gpt2(gpt2_state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict from a ``GPT2LMHeadModel`` one (keys are the same; Conv1D weights are transposed)."""
    converted = {}
    for key, tensor in gpt2_state_dict.items():
        if key.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # old GPT-2 checkpoints store their causal mask as a buffer; we build it on the fly
        converted[key] = tensor.t().contiguous() if _is_transposed(key) else tensor
    if "lm_head.weight" not in converted and "transformer.wte.weight" in converted:
        converted["lm_head.weight"] = converted["transformer.wte.weight"]
    return converted


def state_dict_to_gpt2(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``GPT2LMHeadModel`` state dict from ours (the inverse of ``state_dict_from_gpt2``)."""
    return {key: tensor.t().contiguous() if _is_transposed(key) else tensor for key, tensor in state_dict.items()}
