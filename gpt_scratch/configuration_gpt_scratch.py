"""GPTScratchConfig: every hyper-parameter of a GPT-2-style model, under GPT-2's own field names.

This file travels to the Hub beside the model (``register_for_auto_class``), so it imports only transformers.
"""

from typing import Any, ClassVar

from transformers import GPT2Config, PretrainedConfig

# Activations a user may name; all map to a function in modeling_gpt_scratch.py. "gelu_new" is GPT-2's own name for
# GELU with the tanh approximation, so configs converted from GPT-2 keep their value.
SUPPORTED_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu", "relu", "silu", "relu2")
# The modern recipe's choices beside GPT-2's (the first of each): rotary positions instead of a learned table,
# RMSNorm instead of LayerNorm.
POSITION_EMBEDDING_TYPES = ("absolute", "rope")
# Rotary scaling for contexts beyond the trained one, computed by transformers' own rope functions (as its models do).
ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3")
# What a scaling needs beside its factor (transformers' rope functions read these keys).
ROPE_TYPE_KEYS = {"llama3": ("low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}
NORM_TYPES = ("layernorm", "rmsnorm")
GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu", "relu")

# Fields that mean the same thing under the same name here and in transformers' GPT2Config.
GPT2_SHARED_FIELDS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "activation_function",
                      "resid_pdrop", "embd_pdrop", "attn_pdrop", "layer_norm_epsilon", "initializer_range",
                      "bos_token_id", "eos_token_id", "tie_word_embeddings")  # fmt: skip
# GPT-2 options that change the computation in ways this model does not implement, with the value it needs.
GPT2_REQUIRED_OPTIONS = {
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "add_cross_attention": False,
}

# Named sizes. The four GPT-2 sizes are the published ones; "tiny" (2 layers x 64) is what tests train in seconds,
# "mini" (4 layers x 128) what the quickstarts train in minutes on a CPU.
PRESETS: dict[str, dict[str, int]] = {
    "gpt2": {"n_layer": 12, "n_head": 12, "n_embd": 768},
    "gpt2-medium": {"n_layer": 24, "n_head": 16, "n_embd": 1024},
    "gpt2-large": {"n_layer": 36, "n_head": 20, "n_embd": 1280},
    "gpt2-xl": {"n_layer": 48, "n_head": 25, "n_embd": 1600},
    "tiny": {"n_layer": 2, "n_head": 4, "n_embd": 64, "n_positions": 256},
    "mini": {"n_layer": 4, "n_head": 4, "n_embd": 128, "n_positions": 256},
}
PRESET_ALIASES = {"debug": "tiny"}  # the name "tiny" had until 2026-12: configs and commands that use it still work


class GPTScratchConfig(PretrainedConfig):
    """Configuration of a GPT-2-style decoder (pre-LayerNorm blocks, learned absolute positions, tied embeddings).

    Field names and defaults are GPT-2's (124M); ``attribute_map`` exposes them under the names the rest of
    transformers reads (``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``, ``max_position_embeddings``).
    Use ``GPTScratchConfig.from_preset("gpt2-medium", ...)`` for the other published sizes, or ``tiny`` (2 layers x 64:
    what the tests train) and ``mini`` (4 layers x 128: the quickstart's).

    ``padded_vocab_size`` (as litgpt's field; nanoGPT pads to 50304, Megatron has ``make_vocab_size_divisible_by``)
    gives the embedding and the LM head that many rows instead of ``vocab_size``. Matmuls over a vocabulary that is a
    multiple of 64 or 128 run on faster GPU kernels (GPT-2's 50257 is odd). The extra ids do not exist for anyone else:
    the tokenizer is unchanged, the model returns logits for the ``vocab_size`` real ids only, so padded ids are never
    generated or scored, and GPT-2 export drops the extra rows.

    The modern recipe's options (modded-nanogpt, nanochat), each off by default so the model is GPT-2 unless asked:
    ``position_embedding_type="rope"`` (rotary positions on queries and keys, base ``rope_theta``, no position table),
    ``norm_type="rmsnorm"``, ``qk_norm`` (RMSNorm of each head's queries and keys), ``activation_function="relu2"``,
    ``final_logit_softcapping`` (``cap * tanh(logits / cap)``, Gemma 2's name), ``tie_word_embeddings=False``,
    ``bias=False`` and ``zero_init_residual`` (output projections, and an untied head, start at zero).
    """

    model_type: ClassVar[str] = "gpt_scratch"
    keys_to_ignore_at_inference: ClassVar[list[str]] = ["past_key_values", "cache"]
    attribute_map: ClassVar[dict[str, str]] = {
        "hidden_size": "n_embd",
        "num_hidden_layers": "n_layer",
        "num_attention_heads": "n_head",
        "max_position_embeddings": "n_positions",
    }

    def __init__(
        self,
        vocab_size: int = 50257,
        n_positions: int = 1024,
        n_embd: int = 768,
        n_layer: int = 12,
        n_head: int = 12,
        n_inner: int | None = None,  # None means 4 * n_embd, as in GPT-2
        activation_function: str = "gelu_new",
        resid_pdrop: float = 0.1,
        embd_pdrop: float = 0.1,
        attn_pdrop: float = 0.1,
        layer_norm_epsilon: float = 1e-5,
        initializer_range: float = 0.02,
        bias: bool = True,  # GPT-2 has biases in every Linear and LayerNorm; False drops them (not exportable to GPT-2)
        padded_vocab_size: int | None = None,
        position_embedding_type: str = "absolute",
        rope_theta: float = 10000.0,
        rope_parameters: dict[str, Any] | None = None,  # transformers 5's home for rope_theta and scaling; wins
        rope_scaling: dict[str, Any] | None = None,  # transformers 4.x's name for the scaling part
        norm_type: str = "layernorm",
        qk_norm: bool = False,
        final_logit_softcapping: float | None = None,
        zero_init_residual: bool = False,
        use_cache: bool = True,
        tie_word_embeddings: bool = True,
        bos_token_id: int | None = 50256,
        eos_token_id: int | None = 50256,
        pad_token_id: int | None = 50256,  # GPT-2 has no pad token; reusing <|endoftext|> keeps generate() quiet
        **kwargs: Any,
    ) -> None:
        # A plain __init__ rather than transformers 5's dataclass fields: this file travels with saved models and must
        # load under transformers 4.x too.
        self.vocab_size = vocab_size
        self.n_positions = n_positions
        self.n_embd = n_embd
        self.n_layer = n_layer
        self.n_head = n_head
        self.n_inner = n_inner
        self.activation_function = activation_function
        self.resid_pdrop = resid_pdrop
        self.embd_pdrop = embd_pdrop
        self.attn_pdrop = attn_pdrop
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.bias = bias
        self.padded_vocab_size = padded_vocab_size
        self.position_embedding_type = position_embedding_type
        # Rotary base and scaling under both spellings: transformers 5 reads rope_parameters ({"rope_type": "linear",
        # "factor": 4.0, "rope_theta": ...}), 4.x (and vLLM's pins) rope_theta and rope_scaling.
        rope = {**(rope_scaling or {}), **(rope_parameters or {})}
        rope["rope_type"] = rope.pop("type", None) or rope.get("rope_type", "default")  # 4.x configs may say "type"
        self.rope_theta = float(rope.get("rope_theta", rope_theta))
        # Only rotary models have rope_parameters: transformers (and its common tests) take the attribute to mean
        # "positions are rotary, and can be scaled". A scaling asked of a GPT-2-architecture model is kept, to be
        # refused by name in validate().
        if position_embedding_type == "rope" or rope["rope_type"] != "default":
            self.rope_parameters = {**rope, "rope_theta": self.rope_theta}
            if not isinstance(getattr(type(self), "rope_scaling", None), property):  # 4.x (5 makes it an alias)
                scaled = rope["rope_type"] != "default"
                self.rope_scaling = {k: v for k, v in rope.items() if k != "rope_theta"} if scaled else None
        self.norm_type = norm_type
        self.qk_norm = qk_norm
        self.final_logit_softcapping = final_logit_softcapping
        self.zero_init_residual = zero_init_residual
        self.use_cache = use_cache
        self._validate()
        super().__init__(
            tie_word_embeddings=tie_word_embeddings,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            **kwargs,
        )

    def __setattr__(self, key: str, value: Any) -> None:
        """Keep ``rope_theta`` and ``rope_parameters`` one setting, and rotary models with ``rope_parameters``, when a
        config is changed after it was built (as transformers' tests and users do): either spelling, either way."""
        super().__setattr__(key, value)
        built = "norm_type" in self.__dict__  # the rotary attributes are consistent once __init__ set them
        if not built or key not in ("rope_theta", "rope_parameters", "position_embedding_type"):
            return
        parameters = self.__dict__.get("rope_parameters")
        if key == "rope_theta" and parameters is not None and parameters.get("rope_theta") != value:
            super().__setattr__("rope_parameters", {**parameters, "rope_theta": float(value)})
        elif key == "rope_parameters" and isinstance(value, dict) and "rope_theta" in value:
            super().__setattr__("rope_theta", float(value["rope_theta"]))
        elif key == "rope_parameters" and isinstance(value, dict):
            super().__setattr__("rope_parameters", {**value, "rope_theta": self.rope_theta})
        elif key == "position_embedding_type" and value == "rope" and parameters is None:
            super().__setattr__("rope_parameters", {"rope_type": "default", "rope_theta": self.rope_theta})
        elif key == "position_embedding_type" and value != "rope" and (parameters or {}).get("rope_type") == "default":
            del self.rope_parameters  # only rotary models have rope_parameters (see __init__)

    def _validate(self) -> None:
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} ({value!r}) must be a positive integer")
        if self.n_inner is not None and (not isinstance(self.n_inner, int) or self.n_inner <= 0):
            raise ValueError(f"n_inner ({self.n_inner!r}) must be a positive integer, or None for 4 * n_embd")
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"choose n_head among the divisors of n_embd or change n_embd"
            )
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} ({value}) must be in [0, 1); use 0.0 to disable dropout")
        if self.activation_function not in SUPPORTED_ACTIVATIONS:
            raise ValueError(
                f"activation_function ({self.activation_function!r}) is not supported; "
                f"use one of {', '.join(SUPPORTED_ACTIVATIONS)}"
            )
        if self.padded_vocab_size is not None and (
            not isinstance(self.padded_vocab_size, int) or self.padded_vocab_size < self.vocab_size
        ):
            raise ValueError(
                f"padded_vocab_size ({self.padded_vocab_size!r}) must be an integer >= vocab_size ({self.vocab_size}), "
                "e.g. 50304 (the next multiple of 128) for GPT-2's 50257; or None for no padding"
            )
        if self.layer_norm_epsilon <= 0:
            raise ValueError(f"layer_norm_epsilon ({self.layer_norm_epsilon}) must be positive, e.g. 1e-5")
        if self.initializer_range <= 0:
            raise ValueError(f"initializer_range ({self.initializer_range}) must be positive, e.g. 0.02")
        for name, allowed in (("position_embedding_type", POSITION_EMBEDDING_TYPES), ("norm_type", NORM_TYPES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} ({getattr(self, name)!r}) must be one of {', '.join(map(repr, allowed))}")
        if self.position_embedding_type == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"rotary embeddings rotate pairs of channels, so the head size n_embd / n_head "
                f"({self.n_embd} / {self.n_head} = {self.n_embd // self.n_head}) must be even; change n_head or n_embd"
            )
        if not self.rope_theta > 0:
            raise ValueError(f"rope_theta ({self.rope_theta}) must be positive, e.g. 10000.0")
        rope_type = (getattr(self, "rope_parameters", None) or {}).get("rope_type", "default")
        if rope_type not in ROPE_TYPES:
            raise ValueError(f"rope_type ({rope_type!r}) must be one of {', '.join(map(repr, ROPE_TYPES))}")
        if rope_type != "default":
            if self.position_embedding_type != "rope":
                raise ValueError(
                    f"rope_type {rope_type!r} scales rotary positions, but position_embedding_type is "
                    f"{self.position_embedding_type!r}; set position_embedding_type: rope, or drop the scaling"
                )
            factor = self.rope_parameters.get("factor")
            if not (isinstance(factor, (int, float)) and not isinstance(factor, bool) and 1 <= factor < float("inf")):
                raise ValueError(
                    f"rope_parameters {rope_type!r} needs a factor >= 1 (the context it extends to, over the trained "
                    f"one), got {factor!r}; e.g. {{'rope_type': '{rope_type}', 'factor': 4.0}}"
                )
            missing = [key for key in ROPE_TYPE_KEYS.get(rope_type, ()) if key not in self.rope_parameters]
            if missing:
                raise ValueError(
                    f"rope_parameters {rope_type!r} needs {', '.join(missing)} as well; e.g. Llama 3.1's "
                    "{'rope_type': 'llama3', 'factor': 8.0, 'low_freq_factor': 1.0, 'high_freq_factor': 4.0, "
                    "'original_max_position_embeddings': 8192} (the last: the context it was trained with)"
                )
        if self.final_logit_softcapping is not None and not self.final_logit_softcapping > 0:
            raise ValueError(
                f"final_logit_softcapping ({self.final_logit_softcapping}) must be positive (e.g. 15.0), "
                "or None for no capping"
            )
        for name in ("qk_norm", "zero_init_residual", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} ({getattr(self, name)!r}) must be true or false")

    @property
    def embedding_rows(self) -> int:
        """Rows of the token embedding and the LM head: the vocabulary, padded when ``padded_vocab_size`` is set."""
        return self.padded_vocab_size if self.padded_vocab_size is not None else self.vocab_size

    def gpt2_incompatibilities(self) -> list[str]:
        """The options this config sets that GPT-2 does not have (empty for a GPT-2 architecture)."""
        found = [f"{name}={getattr(self, name)!r}" for name, gpt2 in (
            ("position_embedding_type", "absolute"), ("norm_type", "layernorm"), ("qk_norm", False),
            ("final_logit_softcapping", None), ("bias", True), ("tie_word_embeddings", True),
        ) if getattr(self, name) != gpt2]  # fmt: skip
        if self.activation_function not in GPT2_ACTIVATIONS:
            found.append(f"activation_function={self.activation_function!r}")
        return found

    @property
    def inner_size(self) -> int:
        """Width of the MLP's hidden layer."""
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @classmethod
    def from_gpt2_config(cls, gpt2_config: GPT2Config, **overrides: Any) -> "GPTScratchConfig":
        """The config of a transformers GPT-2; refuses GPT-2 options this model cannot reproduce exactly."""
        for option, required in GPT2_REQUIRED_OPTIONS.items():
            if getattr(gpt2_config, option, required) != required:
                raise ValueError(
                    f"GPT-2 config has {option}={getattr(gpt2_config, option)!r}, which gpt-scratch does not "
                    f"implement; only {option}={required} converts exactly"
                )
        fields = {name: getattr(gpt2_config, name) for name in GPT2_SHARED_FIELDS}
        pad = gpt2_config.pad_token_id
        return cls(**{**fields, "pad_token_id": pad if pad is not None else fields["eos_token_id"], **overrides})

    def to_gpt2_config(self) -> GPT2Config:
        """The equivalent transformers GPT2Config; refuses what GPT-2 cannot represent, naming every such option."""
        if missing := self.gpt2_incompatibilities():
            raise ValueError(
                f"GPT-2 cannot represent this model: it has {', '.join(missing)}, options GPT-2 lacks (GPT-2 has "
                "learned absolute positions, LayerNorm with biases, GELU or ReLU, no capping, and lm_head tied to "
                "wte). Share it as a gpt-scratch directory instead: it loads with trust_remote_code=True"
            )
        return GPT2Config(**{name: getattr(self, name) for name in GPT2_SHARED_FIELDS}, pad_token_id=None)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "GPTScratchConfig":
        """A config of a named size (``gpt2``, ``gpt2-medium``, ``gpt2-large``, ``gpt2-xl``, ``tiny``, ``mini``)."""
        name = PRESET_ALIASES.get(name, name)
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


__all__ = ["GPTScratchConfig", "NORM_TYPES", "POSITION_EMBEDDING_TYPES", "PRESETS", "SUPPORTED_ACTIVATIONS"]
