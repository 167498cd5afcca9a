"""GPT-2 written from scratch as a transformers model: LayerNorm -> attention -> MLP -> Block -> model -> LM head.

Parameter names are GPT-2's (``transformer.h.0.attn.c_attn.weight`` ...), but every projection is an ``nn.Linear``
(GPT-2's checkpoints use a transposed ``Conv1D``; ``state_dict_from_gpt2`` below transposes once, at import).
This file travels to the Hub beside the config (``register_for_auto_class``), so it imports only torch, transformers
and its config.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2LMHeadModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.generation import GenerationMixin
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel

from .configuration_gpt_scratch import GPTScratchConfig

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    # GPT-2's "gelu_new" is GELU with the tanh approximation; PyTorch computes it in one fused kernel.
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}


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
        # The mask is additive (0 where allowed, a large negative number where not) or boolean (True where allowed).
        if attention_mask.dtype == torch.bool:
            attn_weights = attn_weights.masked_fill(~attention_mask, torch.finfo(attn_weights.dtype).min)
        else:
            attn_weights = attn_weights + attention_mask
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(value.dtype)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value)  # (B, nh, T, hs)
    return attn_output.transpose(1, 2).contiguous(), attn_weights  # (B, T, nh, hs)


class GPTScratchAttention(nn.Module):
    """Causal multi-head self-attention with one fused q/k/v projection."""

    def __init__(self, config: GPTScratchConfig, layer_idx: int) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.scaling = self.head_dim**-0.5
        self.is_causal = True  # read by transformers' sdpa/flash attention functions
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.is_residual_projection = True  # read by _init_weights
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, seq_len, width = hidden_states.shape
        qkv = self.c_attn(hidden_states).view(batch, seq_len, 3, self.n_head, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, T, hs)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)  # (B, nh, past + T, hs)

        attention_function = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_function(
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
    """One pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTScratchConfig, layer_idx: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.attn = GPTScratchAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
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
    _supports_flex_attn = True
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
        """GPT-2's initialisation: N(0, 0.02) everywhere, residual projections scaled by 1/sqrt(2 * n_layer)."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            if getattr(module, "is_residual_projection", False):
                # Each block adds two residual branches; scaling keeps the residual stream's variance flat with depth.
                init.normal_(module.weight, mean=0.0, std=std / math.sqrt(2 * self.config.n_layer))
            else:
                init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)


# GPT-2 checkpoints store these projections as Conv1D, weight (in, out); here they are nn.Linear, weight (out, in).
_CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


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


def state_dict_to_gpt2(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A GPT2LMHeadModel state dict from ours (the inverse of state_dict_from_gpt2)."""
    return {k: t.t().contiguous() if k.endswith(_CONV1D_SUFFIXES) else t for k, t in state_dict.items()}


def _resolve_cache_argument(cache: Cache | None, past_key_values: Cache | None) -> Cache | None:
    """transformers 5.x passes the cache as ``cache=``; older callers (lm-eval, user code) use ``past_key_values=``."""
    if cache is not None and past_key_values is not None:
        raise ValueError("pass the KV cache as either `cache` or `past_key_values`, not both")
    cache = cache if cache is not None else past_key_values
    if cache is not None and not isinstance(cache, Cache):
        raise ValueError(
            f"the KV cache must be a transformers Cache object (e.g. DynamicCache), got {type(cache).__name__}; "
            "legacy tuples of tensors are not supported"
        )
    return cache


class GPTScratchModel(GPTScratchPreTrainedModel):
    """The GPT body: token + position embeddings, ``n_layer`` blocks, final LayerNorm. What ``AutoModel`` returns."""

    def __init__(self, config: GPTScratchConfig) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList([GPTScratchBlock(config, layer_idx=i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
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
        cache = _resolve_cache_argument(cache, past_key_values)
        use_cache = use_cache if use_cache is not None else (self.config.use_cache and not self.training)
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if output_attentions and self.config._attn_implementation != "eager":
            raise ValueError(
                f"output_attentions=True needs the eager attention implementation (this model uses "
                f"{self.config._attn_implementation!r}, which does not return attention weights); "
                "load it with attn_implementation='eager'"
            )

        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.wte(input_ids)  # (B, T, C)
        batch, seq_len = inputs_embeds.shape[:2]

        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        past_len = cache.get_seq_length() if cache is not None else 0
        if past_len + seq_len > self.config.n_positions:
            raise ValueError(
                f"sequence length {past_len + seq_len} (cached {past_len} + new {seq_len}) exceeds n_positions "
                f"({self.config.n_positions}), the longest sequence this model has position embeddings for; "
                "truncate the input (e.g. tokenizer(..., truncation=True, max_length=n_positions)) or lower max_length"
            )

        if position_ids is None:
            if attention_mask is not None and attention_mask.ndim == 2:
                # Left padding shifts where each row starts: count only real tokens, so every row's first real token
                # sits at position 0, exactly as if it had been run alone.
                position_ids = attention_mask.long().cumsum(-1) - 1
                position_ids = position_ids.masked_fill(attention_mask == 0, 0)[:, -seq_len:]
            else:
                position_ids = torch.arange(past_len, past_len + seq_len, device=inputs_embeds.device).unsqueeze(0)

        hidden_states = self.drop(inputs_embeds + self.wpe(position_ids))  # (B, T, C)
        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
        )

        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for block in self.h:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states, attn_weights = block(
                hidden_states, attention_mask=causal_mask, cache=cache, position_ids=position_ids, **kwargs
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
            last_hidden_state=hidden_states, cache=cache, hidden_states=all_hidden_states, attentions=all_attentions
        )


class GPTScratchForCausalLM(GPTScratchPreTrainedModel, GenerationMixin):
    """GPT body plus a language-modelling head tied to the token embedding. What ``AutoModelForCausalLM`` returns."""

    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: GPTScratchConfig) -> None:
        super().__init__(config)
        self.transformer = GPTScratchModel(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
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
        gpt2.load_state_dict(state_dict_to_gpt2(self.state_dict()), strict=True)
        return gpt2.to(self.dtype).eval()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, new_embeddings: nn.Embedding) -> None:
        self.transformer.wte = new_embeddings

    def _project_to_vocab(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The LM head; at inference, written into row-aligned memory (see _row_aligned_empty), a quarter faster."""
        head = self.lm_head
        plain = type(head) is nn.Linear and head.bias is None and hidden_states.dtype == head.weight.dtype
        if not plain or torch.is_grad_enabled() or torch.is_autocast_enabled(hidden_states.device.type):
            return head(hidden_states)  # autograd and autocast need the ordinary op
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        out = _row_aligned_empty(flat.shape[0], head.out_features, flat.dtype, flat.device)
        return torch.mm(flat, head.weight.t(), out=out).view(*hidden_states.shape[:-1], -1)

    def _logits_and_loss(self, hidden_states: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, vocab) logits and the summed cross-entropy against ``targets`` (B, T), -100 ignored."""
        batch, seq_len, width = hidden_states.shape
        head = self.lm_head
        if type(head) is not nn.Linear or head.bias is not None:
            # The head was replaced (e.g. by an adapter): call it as it is and use the standard loss.
            logits = head(hidden_states)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="sum")
            return logits, loss
        weight, hidden = head.weight, hidden_states.reshape(batch * seq_len, width)
        if torch.is_autocast_enabled(hidden.device.type):  # a custom Function is not autocast by itself
            dtype = torch.get_autocast_dtype(hidden.device.type)
            weight, hidden = weight.to(dtype), hidden.to(dtype)
        logits, loss = _LMHeadCrossEntropy.apply(hidden, weight, targets.flatten())
        return logits.view(batch, seq_len, -1), loss

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
        **kwargs,
    ) -> CausalLMOutputWithPast | tuple:
        """``labels`` are the input ids themselves (the shift happens here); positions labelled -100 are ignored.
        ``shift_labels`` (transformers' name) are targets already aligned with the positions: position t is scored
        against ``shift_labels[:, t]``, so a (T + 1)-token window trains on all T of its predictions; when given,
        they take precedence over ``labels``, as in transformers' own loss functions.

        ``logits_to_keep=n`` computes logits for the last n positions only (generation needs just the last one).
        ``num_items_in_batch`` (passed by ``Trainer`` under gradient accumulation) turns the mean into a sum over
        the whole accumulated batch, so every token weighs the same whatever micro-batch it lands in.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.transformer(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if labels is not None or shift_labels is not None:
            if logits_to_keep != 0:
                raise ValueError("labels need the logits of every position; do not pass logits_to_keep with labels")
            given = shift_labels if shift_labels is not None else labels
            if given.shape != hidden_states.shape[:2]:
                raise ValueError(f"labels have shape {tuple(given.shape)}, expected {tuple(hidden_states.shape[:2])}")
            # As in transformers' loss functions: shift_labels, when given, are the targets; labels ask for a loss.
            targets = (shift_labels if shift_labels is not None else shift_labels_left(labels)).to(hidden_states.device)
            logits, loss_sum = self._logits_and_loss(hidden_states, targets)
            # Mean over predicted tokens or, under gradient accumulation (Trainer passes num_items_in_batch), this
            # micro-batch's share of the whole batch's mean, so every token weighs the same.
            loss = loss_sum / (num_items_in_batch if num_items_in_batch is not None else (targets != -100).sum())
        else:
            if isinstance(logits_to_keep, int):
                hidden_states = hidden_states[:, -logits_to_keep:] if logits_to_keep else hidden_states
            else:
                hidden_states = hidden_states[:, logits_to_keep]
            logits, loss = self._project_to_vocab(hidden_states), None  # (B, T, vocab)

        if not return_dict:
            rest = tuple(v for v in (outputs.cache, outputs.hidden_states, outputs.attentions) if v is not None)
            return ((loss,) if loss is not None else ()) + (logits,) + rest
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


def _row_aligned_empty(rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised (rows, cols) tensor whose rows start on 64-element boundaries (a view into a wider buffer).

    GPT-2's vocabulary (50257) is odd; with rows that long and misaligned, CPU BLAS writes the logits matrix about a
    third slower (the same reason nanoGPT pads its vocabulary to 50304 on GPU). The pad columns are never read.
    """
    padded_cols = -(-cols // 64) * 64
    return torch.empty(rows, padded_cols, dtype=dtype, device=device)[:, :cols]


class _LMHeadCrossEntropy(torch.autograd.Function):
    """logits = hidden @ weight.T and the summed next-token cross-entropy, with a lean backward.

    Same values and gradients as ``F.linear`` followed by ``F.cross_entropy(reduction="sum")``, but the forward keeps
    the softmax numerator exp(logits - max) that it computes anyway, and the backward turns it into the gradient
    softmax - onehot in place: no log-softmax tensor, no zero-filled NLL gradient, no separate log-softmax backward.
    With GPT-2's 50k vocabulary those (N, V) passes are a large share of a small model's training step.
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor):
        # hidden (N, C), weight (V, C), targets (N,) with -100 for ignored positions
        n_rows, vocab = hidden.shape[0], weight.shape[0]
        logits = torch.mm(hidden, weight.t(), out=_row_aligned_empty(n_rows, vocab, hidden.dtype, hidden.device))
        logits32 = logits.float()  # the loss is computed in fp32 even for bf16 logits
        row_max = logits32.amax(dim=-1, keepdim=True)  # (N, 1)
        numerator = _row_aligned_empty(n_rows, vocab, torch.float32, hidden.device)
        torch.sub(logits32, row_max, out=numerator).exp_()  # (N, V)
        row_sum = numerator.sum(dim=-1, keepdim=True)  # (N, 1)
        valid = targets != -100
        safe_targets = targets.masked_fill(~valid, 0)
        target_logits = logits32.gather(1, safe_targets.unsqueeze(1)).squeeze(1)  # (N,)
        nll = (row_sum.log().squeeze(1) + row_max.squeeze(1) - target_logits) * valid
        ctx.numerator = numerator  # kept off save_for_backward: backward reuses its memory for the gradient
        ctx.save_for_backward(hidden, weight, safe_targets, valid, row_sum)
        ctx.set_materialize_grads(False)
        return logits, nll.sum()

    @staticmethod
    def backward(ctx, grad_logits: torch.Tensor | None, grad_loss: torch.Tensor | None):
        hidden, weight, targets, valid, row_sum = ctx.saved_tensors
        grad = None
        if grad_loss is not None:
            if ctx.numerator is None:
                raise RuntimeError("backward through the language-modelling loss can run only once per forward")
            scale = (grad_loss * valid).unsqueeze(1)  # (N, 1); ignored positions get no gradient
            grad = ctx.numerator.mul_(scale / row_sum)  # softmax * scale, in place
            ctx.numerator = None
            grad[torch.arange(grad.shape[0], device=grad.device), targets] -= scale.squeeze(1)
        if grad_logits is not None:  # the logits were also used outside the loss
            grad = grad_logits.float() if grad is None else grad.add_(grad_logits)
        if grad is None:
            return None, None, None
        grad = grad.to(weight.dtype)
        grad_hidden = grad @ weight if ctx.needs_input_grad[0] else None  # (N, C)
        grad_weight = grad.t() @ hidden if ctx.needs_input_grad[1] else None  # (V, C)
        return grad_hidden, grad_weight, None


def shift_labels_left(labels: torch.Tensor) -> torch.Tensor:
    """Targets for next-token prediction: position t is scored against token t+1; the last position against nothing.

    Shifting the labels rather than slicing the logits means the (B, T, vocab) logits are never copied.
    """
    return F.pad(labels, (0, 1), value=-100)[:, 1:]


__all__ = [
    "GPTScratchPreTrainedModel",
    "GPTScratchModel",
    "GPTScratchForCausalLM",
    "state_dict_from_gpt2",
    "state_dict_to_gpt2",
]
