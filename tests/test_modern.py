"""The modern architecture (rotary, RMSNorm, QK-norm, ReLU², soft-capping, untied head, no biases) against references
built from transformers' own pieces, and everything the GPT-2 architecture supports, for it too (with the tests that
run both architectures through the `either_model` fixture: left padding, batched and cached generation)."""

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache, LlamaConfig, StaticCache
from transformers.activations import ACT2FN
from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding, apply_rotary_pos_emb
from transformers.utils import logging as transformers_logging

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
from gpt_scratch.modeling_gpt_scratch import GPTScratchRotaryEmbedding, apply_rotary

from conftest import MODERN, TINY, left_padded_batch, make_modern

GREEDY = {"max_new_tokens": 10, "do_sample": False}


def llama_rotary(config: GPTScratchConfig) -> LlamaRotaryEmbedding:
    """transformers' rotary embedding for the same head size and base: the independent reference."""
    llama = LlamaConfig(hidden_size=config.n_embd, num_attention_heads=config.n_head,
                        max_position_embeddings=config.n_positions,
                        rope_parameters={**config.rope_parameters, "rope_theta": config.rope_theta})  # fmt: skip
    return LlamaRotaryEmbedding(llama)


def llama_rms_norm(norm: torch.nn.Module, eps: float) -> LlamaRMSNorm:
    reference = LlamaRMSNorm(norm.weight.shape[0], eps=eps)
    reference.weight.data.copy_(norm.weight)
    return reference


def reference_logits(model: GPTScratchForCausalLM, ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """The modern forward written out with transformers' RMSNorm, rotary and ReLU² and textbook causal attention."""
    c = model.config
    eps, heads, hs = c.layer_norm_epsilon, c.n_head, c.n_embd // c.n_head
    cos, sin = llama_rotary(c)(torch.zeros(1), position_ids)
    x = model.transformer.wte.weight[ids]
    batch, seq_len, width = x.shape
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    for block in model.transformer.h:
        q, k, v = F.linear(llama_rms_norm(block.ln_1, eps)(x), block.attn.c_attn.weight).split(width, dim=-1)
        q, k, v = (t.view(batch, seq_len, heads, hs).transpose(1, 2) for t in (q, k, v))
        q, k = llama_rms_norm(block.attn.q_norm, eps)(q), llama_rms_norm(block.attn.k_norm, eps)(k)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        scores = (q @ k.transpose(-1, -2) / hs**0.5).masked_fill(~causal, float("-inf"))
        attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, seq_len, width)
        x = x + F.linear(attended, block.attn.c_proj.weight)
        hidden = ACT2FN["relu2"](F.linear(llama_rms_norm(block.ln_2, eps)(x), block.mlp.c_fc.weight))
        x = x + F.linear(hidden, block.mlp.c_proj.weight)
    logits = F.linear(llama_rms_norm(model.transformer.ln_f, eps)(x), model.lm_head.weight)
    cap = c.final_logit_softcapping
    return cap * torch.tanh(logits / cap)


def test_rotary_equals_transformers_rotary_on_the_same_positions():
    config = GPTScratchConfig(**TINY, **MODERN)
    positions = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 0, 0, 1, 2, 3], [7, 8, 0, 1, 2, 90]])  # plain, padded, packed
    cos, sin = GPTScratchRotaryEmbedding(config)(torch.zeros(1), positions)
    ref_cos, ref_sin = llama_rotary(config)(torch.zeros(1), positions)
    torch.testing.assert_close((cos, sin), (ref_cos, ref_sin))
    query, key = torch.randn(2, 3, 4, 6, 16).unbind(0)  # (B, nh, T, hs)
    torch.testing.assert_close(apply_rotary(query, key, cos, sin), apply_rotary_pos_emb(query, key, ref_cos, ref_sin))


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_modern_logits_equal_a_forward_built_from_transformers_pieces(attn):
    model = make_modern(seed=1, attn_implementation=attn)
    ids = torch.randint(0, 50257, (2, 11))
    with torch.no_grad():
        expected = reference_logits(model, ids, torch.arange(11).expand(2, 11))
        torch.testing.assert_close(model(ids).logits, expected)


def test_rms_norm_equals_torch_functional_rms_norm():
    model = make_modern(seed=2)
    norm = model.transformer.h[0].ln_1
    x = torch.randn(3, 5, 64)
    torch.testing.assert_close(norm(x), F.rms_norm(x, (64,), norm.weight, model.config.layer_norm_epsilon))


def test_soft_capping_bounds_logits_as_cap_tanh_of_the_uncapped_ones():
    capped = make_modern(seed=3)
    uncapped = GPTScratchForCausalLM(GPTScratchConfig(**{**capped.config.to_dict(), "final_logit_softcapping": None}))
    uncapped.load_state_dict(capped.state_dict())
    ids = torch.randint(0, 50257, (2, 9))
    with torch.no_grad():
        raw, logits = uncapped.eval()(ids).logits, capped(ids).logits
    assert raw.abs().max() > 3.0 > logits.abs().max()
    torch.testing.assert_close(logits, 3.0 * torch.tanh(raw / 3.0))


def test_zero_init_residual_starts_every_block_as_identity_and_predicts_uniformly():
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(GPTScratchConfig(**TINY, **MODERN, zero_init_residual=True, vocab_size=1000))
    for block in model.transformer.h:
        assert not block.attn.c_proj.weight.any() and not block.mlp.c_proj.weight.any()
        assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert not model.lm_head.weight.any() and model.transformer.wte.weight.std().item() == pytest.approx(0.02, rel=0.1)
    ids = torch.randint(0, 1000, (2, 8))
    loss = model(ids, labels=ids).loss
    torch.testing.assert_close(loss, torch.log(torch.tensor(1000.0)))
    tied = GPTScratchForCausalLM(GPTScratchConfig(**TINY, zero_init_residual=True, vocab_size=1000))
    assert tied.lm_head.weight is tied.transformer.wte.weight and tied.lm_head.weight.any()  # a tied head stays


def test_untied_head_and_every_option_survive_save_and_load(tmp_path, modern_model):
    modern_model.save_pretrained(tmp_path)
    loaded = GPTScratchForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.lm_head.weight is not loaded.transformer.wte.weight
    for name in MODERN:
        assert getattr(loaded.config, name) == MODERN[name], name
    assert loaded.transformer.wpe is None and loaded.config.rope_parameters["rope_theta"] == 500.0
    ids = torch.randint(0, 50257, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, modern_model(ids).logits)


def test_rope_theta_is_read_from_rope_parameters_as_transformers_5_saves_it():
    config = GPTScratchConfig(
        **TINY, position_embedding_type="rope", rope_parameters={"rope_type": "default", "rope_theta": 123.0}
    )
    assert config.rope_theta == 123.0 and config.rope_parameters["rope_theta"] == 123.0


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("cache_class", ["dynamic", "static"])
def test_cached_forward_equals_uncached(attn, cache_class):
    model = make_modern(seed=4, attn_implementation=attn)
    ids, mask = left_padded_batch(seed=5)
    prefix = ids.shape[1] - 3
    with torch.no_grad():
        cache = (
            DynamicCache(config=model.config)
            if cache_class == "dynamic"
            else StaticCache(config=model.config, max_cache_len=32)
        )
        model(ids[:, :prefix], attention_mask=mask[:, :prefix], cache=cache)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cached = model(ids[:, prefix:], attention_mask=mask, position_ids=positions[:, prefix:], cache=cache).logits
        uncached = model(ids, attention_mask=mask, use_cache=False).logits[:, prefix:]
    real = mask[:, prefix:].bool()
    torch.testing.assert_close(cached[real], uncached[real])


def test_packed_rows_with_restarting_positions_equal_each_sequence_alone(modern_model):
    sequences = [torch.randint(0, 50257, (n,)) for n in (7, 4, 9)]
    packed = torch.cat(sequences)[None]
    positions = torch.cat([torch.arange(len(s)) for s in sequences])[None]
    with torch.no_grad():
        logits = modern_model(packed, position_ids=positions).logits[0]
        start = 0
        for sequence in sequences:
            alone = modern_model(sequence[None]).logits[0]
            torch.testing.assert_close(logits[start : start + len(sequence)], alone)
            start += len(sequence)


def test_sampling_with_static_cache_equals_sampling_without_cache(modern_model):
    ids, mask = left_padded_batch(seed=16)
    kwargs = {"attention_mask": mask, "max_new_tokens": 10, "do_sample": True, "top_k": 50, "temperature": 0.8}
    torch.manual_seed(7)
    static = modern_model.generate(ids, cache_implementation="static", **kwargs)
    torch.manual_seed(7)
    uncached = modern_model.generate(ids, use_cache=False, **kwargs)
    assert torch.equal(static, uncached)


def test_gradient_checkpointing_gives_same_gradients():
    model = make_modern(seed=8).train()
    ids = torch.randint(0, 50257, (2, 16))
    model(ids, labels=ids).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.activation_checkpointing_enable()
    model(ids, labels=ids).loss.backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, plain[name], msg=name)


def test_pipeline_generates_what_generate_does(tmp_path, modern_model):
    from transformers import pipeline

    from gpt_scratch import save_model_dir
    from gpt_scratch.tokenizer import gpt2_tokenizer

    model_dir = save_model_dir(modern_model, tmp_path / "model")
    text = pipeline("text-generation", model=str(model_dir), trust_remote_code=True)("def f(x):", **GREEDY)
    tokenizer = gpt2_tokenizer()
    expected = modern_model.generate(**tokenizer("def f(x):", return_tensors="pt"), **GREEDY)
    assert text[0]["generated_text"] == tokenizer.decode(expected[0])


def test_peft_lora_trains_only_adapters_and_starts_as_the_base_model(modern_model):
    import peft

    base = make_modern(seed=0)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc"], lora_dropout=0.0)
    lora = peft.get_peft_model(base, config)
    ids = torch.randint(0, 50257, (2, 12))
    with torch.no_grad():  # LoRA's B starts at zero: the adapted model is the base model
        torch.testing.assert_close(lora(input_ids=ids).logits, modern_model(ids).logits)
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    optimizer = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(5):
        loss = lora(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    torch.testing.assert_close(lora.base_model.model.lm_head.weight, modern_model.lm_head.weight)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"position_embedding_type": "alibi"}, r"position_embedding_type \('alibi'\) must be one of 'absolute'"),
        ({"norm_type": "batchnorm"}, r"norm_type \('batchnorm'\) must be one of 'layernorm', 'rmsnorm'"),
        (
            {"position_embedding_type": "rope", "n_embd": 60, "n_head": 4},
            r"head size n_embd / n_head \(60 / 4 = 15\) must be even",
        ),
        ({"final_logit_softcapping": 0.0}, r"final_logit_softcapping \(0.0\) must be positive"),
        ({"rope_theta": -1.0}, r"rope_theta \(-1.0\) must be positive"),
        ({"qk_norm": "yes"}, r"qk_norm \('yes'\) must be true or false"),
        (
            {"position_embedding_type": "rope", "rope_parameters": {"rope_type": "ntk-by-parts"}},
            r"rope_type \('ntk-by-parts'\) must be one of 'default', 'linear', 'dynamic', 'yarn', 'llama3'",
        ),
        (
            {"position_embedding_type": "rope", "rope_parameters": {"rope_type": "linear"}},
            r"rope_parameters 'linear' needs a factor >= 1 .* got None",
        ),
        (
            {"rope_parameters": {"rope_type": "linear", "factor": 2.0}},
            r"rope_type 'linear' scales rotary positions, but position_embedding_type is 'absolute'",
        ),
    ],  # fmt: skip
)
def test_invalid_modern_options_are_clear_errors_at_construction(overrides, message):
    with pytest.raises(ValueError, match=message):
        GPTScratchConfig(**{**TINY, **overrides})


def test_to_gpt2_of_a_modern_model_names_every_option_gpt2_lacks(modern_model):
    with pytest.raises(ValueError) as error:
        modern_model.to_gpt2()
    for option in ("position_embedding_type='rope'", "norm_type='rmsnorm'", "qk_norm=True",
                   "activation_function='relu2'", "final_logit_softcapping=3.0", "bias=False",
                   "tie_word_embeddings=False"):  # fmt: skip
        assert option in str(error.value), option
    assert "trust_remote_code" in str(error.value)


def test_a_directory_saved_before_the_modern_options_existed_loads_as_gpt2(tmp_path, gpt2_model, our_model):
    import json

    our_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for name in ("position_embedding_type", "rope_theta", "rope_parameters", "norm_type", "qk_norm",
                 "final_logit_softcapping", "zero_init_residual"):  # fmt: skip
        config.pop(name, None)  # as the previous version wrote it (rope_parameters: only rotary models have it)
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = GPTScratchForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.gpt2_incompatibilities() == [] and loaded.transformer.rotary_emb is None
    ids = torch.randint(0, 50257, (2, 9))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, our_model(ids).logits)
        torch.testing.assert_close(loaded(ids).logits, gpt2_model(ids).logits)


SCALINGS = {
    "linear": {"rope_type": "linear", "factor": 4.0},
    "dynamic": {"rope_type": "dynamic", "factor": 2.0},
    "yarn": {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 64},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64},
}  # fmt: skip


@pytest.mark.parametrize("scaling", SCALINGS)
def test_rotary_scaling_equals_transformers_rotary_models_past_the_trained_length(scaling, caplog):
    """rope_parameters as transformers' rotary models take them: cos and sin equal to Llama's rotary embedding for
    the same parameters, and the whole forward equal to the reference, at positions past n_positions (128), where the
    model warns once instead of refusing (it has no position table), unless its scaling covers them."""
    model = make_modern(seed=31, rope_parameters=dict(SCALINGS[scaling]))
    positions = torch.arange(200)[None]
    cos, sin = GPTScratchRotaryEmbedding(model.config)(torch.zeros(1), positions)
    reference_cos, reference_sin = llama_rotary(model.config)(torch.zeros(1), positions)
    torch.testing.assert_close((cos, sin), (reference_cos, reference_sin))
    default_cos, _ = GPTScratchRotaryEmbedding(make_modern(seed=31).config)(torch.zeros(1), positions)
    assert not torch.allclose(cos[:, -1], default_cos[:, -1])  # the scaling changes the long positions
    ids = torch.randint(0, model.config.vocab_size, (1, 200), generator=torch.Generator().manual_seed(3))
    transformers_logging.get_logger("x").warning_once.cache_clear()  # "once" per process: forget earlier tests'
    with caplog.at_level("WARNING"), torch.no_grad():
        logits = model(ids).logits
        model(ids)
    torch.testing.assert_close(logits, reference_logits(model, ids, positions), rtol=1e-4, atol=1e-4)
    # Only where the positions run past what the scaling covers (its factor x the length trained for): yarn's 2 x 64.
    warned = [r.getMessage() for r in caplog.records if "the length this rotary model was built for" in r.getMessage()]
    if scaling == "yarn":
        assert len(warned) == 1 and "past n_positions (128)" in warned[0] and "rope_type" in warned[0], warned
    else:
        assert warned == [], warned


def test_rotary_scaling_under_transformers_4_spelling_and_after_a_save(tmp_path):
    """4.x configs name it rope_scaling (and sometimes "type"); a saved model reloads with the same scaling."""
    config = GPTScratchConfig(**TINY, **MODERN, rope_scaling={"type": "linear", "factor": 2.0})
    assert config.rope_parameters == {"rope_type": "linear", "factor": 2.0, "rope_theta": 500.0}
    model = GPTScratchForCausalLM(config).eval()
    model.save_pretrained(tmp_path)
    loaded = GPTScratchForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.rope_parameters == config.rope_parameters
    ids = torch.randint(0, config.vocab_size, (1, 150))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_rotary_module_has_transformers_rotary_interface_and_scaling_properties():
    """What transformers' common model tests ask of a rotary module (``rotary_emb(x, position_ids)``, ``inv_freq``),
    and the properties they check: linear scaling maps position p to p / factor, dynamic NTK leaves short inputs
    alone and slows every frequency on long ones, yarn changes both; a GPT-2-architecture config has no
    rope_parameters (its positions are a table, not rotations, so scaling does not apply)."""
    factor, short, long = 10, torch.arange(10)[None], torch.arange(192)[None]  # n_positions 128

    def rotary(**rope):
        config = GPTScratchConfig(**TINY, **MODERN, rope_parameters={"rope_theta": 10_000.0, **rope})
        return GPTScratchRotaryEmbedding(config)

    original, linear = rotary(), rotary(rope_type="linear", factor=factor)
    (original_cos, original_sin), (linear_cos, linear_sin) = (
        original(torch.zeros(1), long),
        linear(torch.zeros(1), long),
    )
    for position in range(0, 192, factor):
        torch.testing.assert_close(linear_cos[:, position], original_cos[:, position // factor])
        torch.testing.assert_close(linear_sin[:, position], original_sin[:, position // factor])
    dynamic = rotary(rope_type="dynamic", factor=factor)
    torch.testing.assert_close(dynamic(torch.zeros(1), short), original(torch.zeros(1), short))
    assert not torch.allclose(dynamic(torch.zeros(1), long)[0], original_cos)
    assert (dynamic.inv_freq <= original.inv_freq * (1 + 1e-7)).all() and (dynamic.inv_freq < original.inv_freq).any()
    yarn = rotary(rope_type="yarn", factor=factor)
    assert not torch.allclose(yarn(torch.zeros(1), short)[0], original(torch.zeros(1), short)[0])
    assert not hasattr(GPTScratchConfig(**TINY), "rope_parameters")
