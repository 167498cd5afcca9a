"""GPT-2 written from scratch as a transformers model: norm -> rotary -> attention -> MLP -> Block -> model -> LM head.

Out of the box it is GPT-2 exactly. The modern recipe's options (``GPTScratchConfig``: rotary positions, RMSNorm,
QK-norm, ReLU², logit soft-capping, untied head, no biases, zero-initialised projections) each swap one named piece.

Parameter names are GPT-2's (``transformer.h.0.attn.c_attn.weight`` ...), but every projection is an ``nn.Linear``
(GPT-2's checkpoints use a transposed ``Conv1D``; ``state_dict_from_gpt2`` below transposes once, at import).
This file travels to the Hub beside the config (``register_for_auto_class``), so it imports only torch, transformers
and its config, and it keeps to what transformers 4.57 through 5.x all provide (vLLM and older installs load it too).
The forward has no data-dependent Python branches, so ``torch.compile(fullgraph=True)`` traces it as one graph.
"""

import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2LMHeadModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.generation import GenerationMixin
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.utils import logging

from .configuration_gpt_scratch import GPTScratchConfig

try:  # transformers >= 5: init functions that from_pretrained knows not to re-apply over loaded weights
    from transformers import initialization as init
except ImportError:  # transformers 4.x
    from torch.nn import init

logger = logging.get_logger(__name__)

# transformers 5.24 renamed the cache from `past_key_values` to `cache` (in forward arguments and output fields);
# whichever this installation uses is the name our outputs carry, so its generate() finds the cache.
CACHE_FIELD = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    # GPT-2's "gelu_new" is GELU with the tanh approximation; PyTorch computes it in one fused kernel.
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
    "relu2": lambda x: F.relu(x).square(),  # ReLU² (Primer; modded-nanogpt, nanochat)
}
# Attention implementations that take the 4-D boolean mask built here; others (flash attention, vLLM's, a user's
# registered function) get the 2-D padding mask as transformers gives it and the position ids.
MASKED_IMPLEMENTATIONS = ("eager", "sdpa")


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention spelled out: softmax(q k^T * scaling + mask) v. Returns (B, T, nh, hs) and the weights."""
    attn_weights = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B, nh, T, S)
    if attention_mask is not None:
        # The mask is boolean (True where allowed) or additive (0 where allowed, a large negative number where not).
        if attention_mask.dtype == torch.bool:
            attn_weights = attn_weights.masked_fill(~attention_mask, torch.finfo(attn_weights.dtype).min)
        else:
            attn_weights = attn_weights + attention_mask
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(value.dtype)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value)  # (B, nh, T, hs)
    return attn_output.transpose(1, 2).contiguous(), attn_weights  # (B, T, nh, hs)


def build_norm(config: GPTScratchConfig, width: int) -> nn.Module:
    """GPT-2's LayerNorm, or RMSNorm (no mean, no bias: the modern recipe), over the last ``width`` channels."""
    if config.norm_type == "rmsnorm":
        return nn.RMSNorm(width, eps=config.layer_norm_epsilon)
    return nn.LayerNorm(width, eps=config.layer_norm_epsilon, bias=config.bias)


class GPTScratchRotaryEmbedding(nn.Module):
    """Rotary position embedding (RoFormer): the cos and sin of each position's rotation angles, shared by all layers.

    Channel pair (i, i + hs/2) of a head turns by ``position * rope_theta^(-2i/hs)``, so the dot product of a query
    and a key depends on their distance only. The frequencies are computed on the fly (hs/2 numbers): no buffer that
    ``from_pretrained`` could leave uninitialised. ``rope_parameters`` with a ``rope_type`` other than ``default``
    scales them for contexts beyond the trained one, through transformers' own functions.
    """

    def __init__(self, config: GPTScratchConfig) -> None:
        super().__init__()
        self.head_dim = config.n_embd // config.n_head
        rope = config.rope_parameters
        self.theta = float(rope.get("rope_theta", config.rope_theta))
        self.config = config
        self.rope_type = rope.get("rope_type", "default")
        self.fixed_scaling = self.rope_type not in ("default", "dynamic")  # frequencies that no input changes
        self.attention_scaling = 1.0
        # inv_freq as transformers' rotary modules have it: a plain tensor, not a buffer (no weight loading touches
        # it), made on the CPU with real numbers also inside from_pretrained's meta-device construction.
        with torch.device("cpu"):
            if self.fixed_scaling:
                self.inv_freq, self.attention_scaling = rope_function(self.rope_type)(config, "cpu")
            else:
                self.inv_freq = self.inverse_frequencies(torch.zeros(1, 1, dtype=torch.long))

    def inverse_frequencies(self, position_ids: torch.Tensor) -> torch.Tensor:
        """The (hs/2,) angular speeds of the channel pairs for these positions (dynamic NTK: for their extent)."""
        device = position_ids.device
        if self.fixed_scaling:
            return self.inv_freq.to(device=device, dtype=torch.float32)
        if self.rope_type == "dynamic":  # NTK: a larger base once positions pass the trained length
            seq_len = position_ids.max() + 1
            return rope_function("dynamic")(self.config, device, seq_len=seq_len)[0].float()
        exponents = torch.arange(0, self.head_dim, 2, device=device, dtype=torch.float32) / self.head_dim
        return self.theta**-exponents

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin (B, T, hs), in fp32, of ``position_ids`` (B, T); ``x`` is any tensor of the forward (the
        signature of transformers' rotary modules)."""
        inverse_frequencies = self.inverse_frequencies(position_ids)  # (hs/2,)
        if self.rope_type == "dynamic" and not torch.compiler.is_compiling():
            self.inv_freq = inverse_frequencies  # what the last forward used, as transformers' modules keep it
        angles = position_ids[..., None].float() * inverse_frequencies  # (B, T, hs/2), in fp32 even under autocast
        angles = torch.cat((angles, angles), dim=-1)  # (B, T, hs)
        if self.attention_scaling != 1.0:  # YaRN's temperature, folded into cos and sin as transformers does
            return angles.cos() * self.attention_scaling, angles.sin() * self.attention_scaling
        return angles.cos(), angles.sin()


def rope_function(rope_type: str):
    """transformers' own frequencies for a scaled rotary type (linear, dynamic, yarn, llama3): what its rotary
    models compute for the same ``rope_parameters``, in every transformers version this file loads in."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    return ROPE_INIT_FUNCTIONS[rope_type]


def apply_rotary(
    query: torch.Tensor, key: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate each head's (B, nh, T, hs) queries and keys by their positions' angles (cos, sin: (B, T, hs))."""
    cos, sin = cos.unsqueeze(1).to(query.dtype), sin.unsqueeze(1).to(query.dtype)  # (B, 1, T, hs)

    def rotate(x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=-1)
        return x * cos + torch.cat((-second, first), dim=-1) * sin

    return rotate(query), rotate(key)


class GPTScratchAttention(nn.Module):
    """Causal multi-head self-attention with one fused q/k/v projection (optionally QK-norm and rotary)."""

    def __init__(self, config: GPTScratchConfig, layer_idx: int) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.scaling = self.head_dim**-0.5
        # Read by transformers' sdpa/flash functions: with no mask given, SDPA runs its fused causal kernels.
        self.is_causal = True
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.is_residual_projection = True  # read by _init_weights
        self.resid_dropout = nn.Dropout(config.resid_pdrop)
        # QK-norm: each head's queries and keys at unit RMS (times a learned gain), which bounds the attention logits.
        self.q_norm = build_norm(config, self.head_dim) if config.qk_norm else nn.Identity()
        self.k_norm = build_norm(config, self.head_dim) if config.qk_norm else nn.Identity()

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        output_attentions: bool = False,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, seq_len, width = hidden_states.shape
        qkv = self.c_attn(hidden_states).view(batch, seq_len, 3, self.n_head, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, T, hs)
        query, key = self.q_norm(query), self.k_norm(key)  # identity unless qk_norm
        if position_embeddings is not None:  # rotary: keys enter the cache already rotated to their positions
            query, key = apply_rotary(query, key, *position_embeddings)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)  # (B, nh, past + T, hs)

        # One lookup and one call, in forward itself: vLLM's Transformers backend finds the attention this way (it reads
        # this method's source) and routes the call to its paged attention. Only eager returns attention weights.
        attention_interface: Callable = eager_attention_forward
        if self.config._attn_implementation != "eager" and not output_attentions:
            attention_interface = ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            scaling=self.scaling,
            dropout=self.config.attn_pdrop if self.training else 0.0,
            **kwargs,
        )
        attn_output = attn_output.reshape(batch, seq_len, width)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(attn_output)), attn_weights


class GPTScratchMLP(nn.Module):
    """Position-wise feed-forward: widen, activate, project back."""

    def __init__(self, config: GPTScratchConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.inner_size, bias=config.bias)
        self.act = ACTIVATIONS[config.activation_function]
        self.c_proj = nn.Linear(config.inner_size, config.n_embd, bias=config.bias)
        self.c_proj.is_residual_projection = True  # read by _init_weights
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(hidden_states))))


class GPTScratchBlock(GradientCheckpointingLayer):
    """One pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTScratchConfig, layer_idx: int) -> None:
        super().__init__()
        self.ln_1 = build_norm(config, config.n_embd)
        self.attn = GPTScratchAttention(config, layer_idx)
        self.ln_2 = build_norm(config, config.n_embd)
        self.mlp = GPTScratchMLP(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_output, attn_weights = self.attn(self.ln_1(hidden_states), attention_mask, cache=cache, **kwargs)
        hidden_states = hidden_states + attn_output
        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states))
        return hidden_states, attn_weights


class GPTScratchPreTrainedModel(PreTrainedModel):
    config_class = GPTScratchConfig
    config: GPTScratchConfig
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    _no_split_modules = ["GPTScratchBlock"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        # transformers writes only the saved class into auto_map; name both, so a directory saved from either class
        # loads with AutoModel and with AutoModelForCausalLM.
        if self._auto_class is not None:
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map["AutoModel"] = "modeling_gpt_scratch.GPTScratchModel"
            auto_map["AutoModelForCausalLM"] = "modeling_gpt_scratch.GPTScratchForCausalLM"
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2's initialisation: N(0, 0.02) everywhere, residual projections scaled by 1/sqrt(2 * n_layer).

        With ``zero_init_residual`` (modded-nanogpt, nanochat) the residual projections and an untied head start at
        zero instead: every block starts as the identity and the first prediction is uniform.
        """
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            residual = getattr(module, "is_residual_projection", False)
            untied_head = module is getattr(self, "lm_head", None) and not self.config.tie_word_embeddings
            if self.config.zero_init_residual and (residual or untied_head):
                init.zeros_(module.weight)
            elif residual:
                # Each block adds two residual branches; scaling keeps the residual stream's variance flat with depth.
                init.normal_(module.weight, mean=0.0, std=std / math.sqrt(2 * self.config.n_layer))
            else:
                init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
            init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:  # RMSNorm has none
                init.zeros_(module.bias)


# GPT-2 checkpoints store these projections as Conv1D, weight (in, out); here they are nn.Linear, weight (out, in).
_CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_VOCABULARY_ROWS = ("transformer.wte.weight", "lm_head.weight")


def state_dict_from_gpt2(gpt2_state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict from a GPT2LMHeadModel one: same keys, Conv1D weights transposed (once, here)."""
    converted = {}
    for key, tensor in gpt2_state_dict.items():
        if key.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # old GPT-2 checkpoints store their causal mask as a buffer; it is built on the fly here
        converted[key] = tensor.t().contiguous() if key.endswith(_CONV1D_SUFFIXES) else tensor
    if "lm_head.weight" not in converted and "transformer.wte.weight" in converted:
        converted["lm_head.weight"] = converted["transformer.wte.weight"]
    return converted


def state_dict_to_gpt2(state_dict: dict[str, torch.Tensor], vocab_size: int | None = None) -> dict[str, torch.Tensor]:
    """A GPT2LMHeadModel state dict from ours (the inverse of state_dict_from_gpt2).

    ``vocab_size`` drops the rows a padded vocabulary adds to the embedding and the head: GPT-2 has none.
    """
    converted = {}
    for key, tensor in state_dict.items():
        if key.endswith(_CONV1D_SUFFIXES):
            tensor = tensor.t().contiguous()
        elif key in _VOCABULARY_ROWS and vocab_size is not None:
            tensor = tensor[:vocab_size]
        converted[key] = tensor
    return converted


def _resolve_cache_argument(cache: Cache | None, past_key_values: Cache | None) -> Cache | None:
    """The KV cache, passed as ``cache`` (transformers >= 5.24) or ``past_key_values`` (older versions, lm-eval)."""
    if cache is not None and past_key_values is not None:
        raise ValueError("pass the KV cache as either `cache` or `past_key_values`, not both")
    if past_key_values is not None and CACHE_FIELD == "cache" and not torch.compiler.is_compiling():
        # As transformers' own models warn since the rename; older transformers know only this name, so stay quiet.
        warnings.warn(
            "`past_key_values` is deprecated and will be removed in version 5.40.0 for `forward`. Use `cache` instead.",
            FutureWarning,
            stacklevel=3,
        )
    cache = cache if cache is not None else past_key_values
    if cache is not None and not isinstance(cache, Cache):
        raise ValueError(
            f"the KV cache must be a transformers Cache object (e.g. DynamicCache), got {type(cache).__name__}; "
            "legacy tuples of tensors are not supported"
        )
    return cache


def causal_attention_mask(
    padding_mask: torch.Tensor | None,
    sequence_ids: torch.Tensor | None,
    past_length: int | torch.Tensor,
    seq_len: int,
    key_length: int,
    device: torch.device,
) -> torch.Tensor:
    """(B or 1, 1, T, S) boolean mask, True where query t may attend to key slot s.

    A query at cache slot past + t sees slots up to its own (causal); ``padding_mask`` (B, <= S), 1 for real tokens,
    hides padding; ``sequence_ids`` (B, T) keep packed sequences apart (a key is seen only from its own sequence).
    """
    query_slots = torch.arange(seq_len, device=device) + past_length  # (T,)
    key_slots = torch.arange(key_length, device=device)  # (S,)
    mask = (key_slots[None, :] <= query_slots[:, None])[None, None]  # (1, 1, T, S)
    if padding_mask is not None:
        # A static cache's buffer is longer than the mask generate() keeps; slots past it are future anyway.
        padding_mask = F.pad(padding_mask.bool(), (0, max(key_length - padding_mask.shape[-1], 0)))[:, :key_length]
        mask = mask & padding_mask[:, None, None, :]
    if sequence_ids is not None:
        mask = mask & (sequence_ids[:, None, :, None] == sequence_ids[:, None, None, :])
    return mask


def packed_sequence_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) index of the sequence each token belongs to, where positions restart (padding-free packing).

    ``[[0, 1, 2, 0, 1, 0]]`` (three sequences in one row, as DataCollatorWithFlattening packs them) gives
    ``[[0, 0, 0, 1, 1, 2]]``: a new sequence starts wherever the position does not follow the previous one.
    """
    steps = torch.diff(position_ids, prepend=position_ids[:, :1] - 1, dim=-1)
    return (steps != 1).cumsum(-1)


class GPTScratchModel(GPTScratchPreTrainedModel):
    """The GPT body: token embeddings, positions (a learned table, or rotary in every attention), ``n_layer`` blocks,
    a final norm. What ``AutoModel`` returns."""

    def __init__(self, config: GPTScratchConfig) -> None:
        super().__init__(config)
        absolute = config.position_embedding_type == "absolute"
        self.wte = nn.Embedding(config.embedding_rows, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd) if absolute else None
        self.rotary_emb = None if absolute else GPTScratchRotaryEmbedding(config)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList([GPTScratchBlock(config, layer_idx=i) for i in range(config.n_layer)])
        self.ln_f = build_norm(config, config.n_embd)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, new_embeddings: nn.Embedding) -> None:
        self.wte = new_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast | tuple:
        """``position_ids`` that restart within a row (``[0, 1, 2, 0, 1]``) mark packed sequences: with nothing
        cached and no padding mask, each attends only within itself, and the position limit applies to positions,
        not to the row length.
        """
        cache = _resolve_cache_argument(cache, past_key_values)
        use_cache = use_cache if use_cache is not None else (self.config.use_cache and not self.training)
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        implementation = self.config._attn_implementation
        if output_attentions and implementation != "eager":
            logger.warning_once(
                f"output_attentions=True: {implementation!r} attention returns no attention weights, so this call "
                "computes attention eagerly; load the model with attn_implementation='eager' to do so always"
            )
            implementation = "eager"

        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.wte(input_ids)  # (B, T, C)
        seq_len = inputs_embeds.shape[1]
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        # A StaticCache has fixed-size buffers (unfilled slots are masked as future) and a tensor length; its length
        # is never compared in Python, which would break the graph.
        static_cache = cache is not None and cache.is_compileable
        past_length = cache.get_seq_length() if cache is not None else 0
        padding_mask = attention_mask if attention_mask is not None and attention_mask.ndim == 2 else None
        # Restarting positions mark packed sequences in a prompt or a training row; not once a cache holds a past.
        packed = position_ids is not None and attention_mask is None and not static_cache and past_length == 0

        if position_ids is None:
            if padding_mask is not None:
                # Left padding shifts where each row starts: count only real tokens, so every row's first real token
                # sits at position 0, exactly as if it had been run alone.
                position_ids = padding_mask.long().cumsum(-1) - 1
                position_ids = position_ids.masked_fill(padding_mask == 0, 0)[:, -seq_len:]
            else:
                position_ids = (torch.arange(seq_len, device=inputs_embeds.device) + past_length).unsqueeze(0)
            self._check_positions(position_ids, highest=past_length + seq_len - 1)
        else:
            self._check_positions(position_ids)

        # Positions enter once, as a learned vector added here (GPT-2), or in every attention as a rotation (rope).
        hidden_states = inputs_embeds if self.wpe is None else inputs_embeds + self.wpe(position_ids)  # (B, T, C)
        hidden_states = self.drop(hidden_states)
        position_embeddings = None if self.rotary_emb is None else self.rotary_emb(hidden_states, position_ids)
        if implementation not in MASKED_IMPLEMENTATIONS:
            mask = attention_mask  # flash attention and external backends take the 2-D mask (and position_ids)
        elif attention_mask is not None and attention_mask.ndim == 4:
            mask = attention_mask  # prepared by the caller
        elif (
            implementation == "sdpa"
            and padding_mask is None
            and not packed
            and not static_cache
            and (past_length == 0 or seq_len == 1)
        ):
            # Plain causal attention: no mask at all, so SDPA runs is_causal=True on its fused (flash) kernels. A
            # single new token over a growing cache may see every key, which is also what no mask means.
            mask = None
        else:
            key_length = cache.layers[0].max_cache_len if static_cache else past_length + seq_len
            sequence_ids = packed_sequence_ids(position_ids) if packed else None
            mask = causal_attention_mask(
                padding_mask, sequence_ids, past_length, seq_len, key_length, inputs_embeds.device
            )

        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for block in self.h:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states, attn_weights = block(
                hidden_states,
                attention_mask=mask,
                cache=cache,
                position_ids=position_ids,
                position_embeddings=position_embeddings,
                output_attentions=output_attentions,
                **kwargs,
            )
            if output_attentions:
                all_attentions += (attn_weights,)
        hidden_states = self.ln_f(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)

        cache = cache if use_cache else None
        if not return_dict:
            return tuple(v for v in (hidden_states, cache, all_hidden_states, all_attentions) if v is not None)
        return BaseModelOutputWithPast(
            last_hidden_state=hidden_states,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
            **{CACHE_FIELD: cache},
        )

    def _check_positions(self, position_ids: torch.Tensor, highest: int | torch.Tensor | None = None) -> None:
        """A clear error for positions past the embedding table (torch would fail deep inside the embedding lookup);
        for rotary models, which have no table, a warning once.

        Skipped under torch.compile: reading the positions' values would break the graph.
        """
        if torch.compiler.is_compiling():
            return
        if highest is None or isinstance(highest, torch.Tensor):
            highest = int(position_ids.max()) if position_ids.numel() else 0
        if self.rotary_emb is not None:
            # Rotary positions have no table to run off: past the trained length the model runs, and may be worse;
            # a rotary scaling covers factor x the length it was trained for.
            rope = getattr(self.config, "rope_parameters", None) or {}
            covered = self.config.n_positions
            if rope.get("rope_type", "default") != "default":
                trained = rope.get("original_max_position_embeddings") or self.config.n_positions
                covered = max(covered, int(trained * rope["factor"]))
            if highest < covered:
                return
            length = (
                f"n_positions ({covered})"
                if covered == self.config.n_positions
                else f"{covered}, what its scaling covers"
            )
            logger.warning_once(
                f"positions past {length}, the length this rotary model was built for: outputs may degrade there. "
                "rope_parameters with a rope_type (linear, dynamic, yarn, llama3) and a factor scales the positions "
                "for longer contexts"
            )
        elif highest >= self.config.n_positions:
            raise ValueError(
                f"the input needs position {highest}, which exceeds n_positions ({self.config.n_positions}): the model "
                f"is built for positions 0..{self.config.n_positions - 1} (cached and new tokens "
                "count together; packed sequences count separately); "
                "truncate the input (e.g. tokenizer(..., truncation=True, max_length=n_positions)) or lower max_length"
            )


class GPTScratchForCausalLM(GPTScratchPreTrainedModel, GenerationMixin):
    """GPT body plus a language-modelling head (tied to the token embedding unless ``tie_word_embeddings=False``).
    What ``AutoModelForCausalLM`` returns."""

    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}
    # Opt-in: a loss computed from the hidden states and the head's weight, never the full logits (train.py sets
    # gpt_scratch.training.head_loss.chunked_head_cross_entropy). Called as f(hidden_states, head_weight, labels,
    # vocab_size=, softcap=, shift_labels=, num_items_in_batch=).
    head_loss_function = None

    def __init__(self, config: GPTScratchConfig) -> None:
        super().__init__(config)
        self.transformer = GPTScratchModel(config)
        self.lm_head = nn.Linear(config.n_embd, config.embedding_rows, bias=False)
        self.loss_type = "ForCausalLM"  # transformers' standard causal-LM loss, read by self.loss_function
        self.post_init()

    @classmethod
    def from_gpt2(cls, name_or_path: str, **kwargs) -> "GPTScratchForCausalLM":
        """Any GPT-2 checkpoint transformers can load (a Hub id such as "gpt2", or a local directory), as this model.

        ``kwargs`` go to ``GPT2LMHeadModel.from_pretrained`` (e.g. ``revision``, ``dtype``).
        """
        gpt2 = GPT2LMHeadModel.from_pretrained(name_or_path, **kwargs)
        model = cls(GPTScratchConfig.from_gpt2_config(gpt2.config))
        model.load_state_dict(state_dict_from_gpt2(gpt2.state_dict()), strict=True)
        return model.to(gpt2.dtype).eval()

    def to_gpt2(self) -> GPT2LMHeadModel:
        """The same weights as a transformers GPT2LMHeadModel (for every tool that knows GPT-2)."""
        gpt2 = GPT2LMHeadModel(self.config.to_gpt2_config())
        gpt2.load_state_dict(state_dict_to_gpt2(self.state_dict(), self.config.vocab_size), strict=True)
        return gpt2.to(self.dtype).eval()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, new_embeddings: nn.Embedding) -> None:
        self.transformer.wte = new_embeddings

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head  # transformers 4.x ties the head to the embedding through this

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        shift_labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        num_items_in_batch: int | torch.Tensor | None = None,
        skip_logits: bool | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast | tuple:
        """``labels`` are the input ids themselves (the shift happens in the loss); positions labelled -100 are
        ignored. ``shift_labels`` (transformers' name) are targets already aligned with the positions: position t is
        scored against ``shift_labels[:, t]``, so a (T + 1)-token window trains on all T of its predictions; when
        given, they take precedence over ``labels``, as in transformers' own loss functions.

        ``logits_to_keep=n`` computes logits for the last n positions only (generation needs just the last one).
        ``num_items_in_batch`` (passed by ``Trainer`` under gradient accumulation) turns the mean into a sum over
        the whole accumulated batch, so every token weighs the same whatever micro-batch it lands in.
        With ``head_loss_function`` set, a loss in training mode (or wherever ``skip_logits=True``, as transformers'
        Trainer passes it) comes from that function and ``logits`` is None.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.transformer(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=_resolve_cache_argument(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        wants_loss = labels is not None or shift_labels is not None
        if wants_loss:
            if not (isinstance(logits_to_keep, int) and logits_to_keep == 0):
                raise ValueError("labels need the logits of every position; do not pass logits_to_keep with labels")
            given = shift_labels if shift_labels is not None else labels
            if given.shape != hidden_states.shape[:2]:
                raise ValueError(f"labels have shape {tuple(given.shape)}, expected {tuple(hidden_states.shape[:2])}")
        elif isinstance(logits_to_keep, int):
            hidden_states = hidden_states[:, -logits_to_keep:] if logits_to_keep else hidden_states
        else:
            hidden_states = hidden_states[:, logits_to_keep]

        skip_logits = self.training if skip_logits is None else skip_logits
        if wants_loss and skip_logits and self.head_loss_function is not None:
            loss = self.head_loss_function(
                hidden_states,
                self.lm_head.weight,
                labels,
                vocab_size=self.config.vocab_size,
                softcap=self.config.final_logit_softcapping,
                shift_labels=shift_labels,
                num_items_in_batch=num_items_in_batch,
            )
            logits = None
        else:
            loss, logits = self._logits_and_loss(hidden_states, labels, shift_labels, num_items_in_batch)

        cache = getattr(outputs, CACHE_FIELD)
        if not return_dict:
            rest = tuple(v for v in (cache, outputs.hidden_states, outputs.attentions) if v is not None)
            return tuple(v for v in (loss, logits) if v is not None) + rest
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            **{CACHE_FIELD: cache},
        )

    def _logits_and_loss(self, hidden_states, labels, shift_labels, num_items_in_batch) -> tuple:
        """(loss or None, logits). The logits are (B, T, vocab): the padded rows of a padded vocabulary are sliced
        off, so their ids are never scored or generated; the slice is a view, which torch.compile fuses into the
        loss."""
        logits = self.lm_head(hidden_states)[..., : self.config.vocab_size]
        if self.config.final_logit_softcapping is not None:  # cap * tanh(logits / cap): smooth, bounded logits
            cap = self.config.final_logit_softcapping
            logits = torch.tanh(logits / cap) * cap
        if labels is None and shift_labels is None:
            return None, logits
        # transformers' causal-LM loss (shifts labels, not logits; sums over num_items_in_batch when given), or
        # whatever loss a user or Trainer set as model.loss_function.
        loss = self.loss_function(
            logits,
            labels,
            vocab_size=self.config.vocab_size,
            shift_labels=shift_labels.contiguous() if shift_labels is not None else None,  # it views them flat
            num_items_in_batch=num_items_in_batch,
        )
        return loss, logits


__all__ = [
    "GPTScratchPreTrainedModel",
    "GPTScratchRotaryEmbedding",
    "apply_rotary",
    "GPTScratchModel",
    "GPTScratchForCausalLM",
    "causal_attention_mask",
    "packed_sequence_ids",
    "state_dict_from_gpt2",
    "state_dict_to_gpt2",
]
