"""The model is compile-clean: every path traces as one graph, compiled results equal eager ones, and training
attention reaches SDPA's fused causal kernels (no materialised mask)."""

import functools

import pytest
import torch
from transformers import DynamicCache, StaticCache

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
from gpt_scratch.training.head_loss import chunked_head_cross_entropy

from conftest import MODERN, left_padded_batch, ours_from


@pytest.fixture(params=["gpt2", "modern"])
def debug_model(request) -> GPTScratchForCausalLM:
    """Both architectures: GPT-2's, and every option of the modern recipe at once."""
    torch.manual_seed(0)
    modern = MODERN if request.param == "modern" else {}
    return GPTScratchForCausalLM(
        GPTScratchConfig.from_preset(
            "tiny", padded_vocab_size=50304, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0, **modern
        )
    )


def windows(seed: int = 0, batch: int = 2, seq_len: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    window = torch.randint(0, 50257, (batch, seq_len + 1), generator=generator)
    return window[:, :-1], window[:, 1:]


def assert_one_graph(function, *args) -> None:
    explanation = torch._dynamo.explain(function)(*args)
    assert explanation.break_reasons == []
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0)


@pytest.mark.parametrize("head_loss", ["plain", "chunked"])
def test_training_forward_with_loss_traces_as_one_graph(debug_model, head_loss):
    inputs, targets = windows(batch=4, seq_len=40)  # 160 positions: the chunked head + loss runs 3 chunks of 64
    debug_model.train()
    if head_loss == "chunked":
        debug_model.head_loss_function = functools.partial(chunked_head_cross_entropy, chunk_size=64)
    assert_one_graph(
        lambda x, y: debug_model(input_ids=x, labels=x, shift_labels=y, use_cache=False).loss, inputs, targets
    )


@pytest.mark.parametrize("variant", ["no cache", "dynamic cache", "left padded"])
def test_inference_forward_traces_as_one_graph(debug_model, variant):
    debug_model.eval()
    ids, mask = left_padded_batch(lengths=(9, 5))
    if variant == "no cache":
        assert_one_graph(lambda x: debug_model(x, use_cache=False).logits, ids)
    elif variant == "dynamic cache":
        cache = DynamicCache(config=debug_model.config)
        assert_one_graph(lambda x: debug_model(x, cache=cache, use_cache=True).logits, ids)
    else:
        assert_one_graph(lambda x, m: debug_model(x, attention_mask=m, use_cache=False).logits, ids, mask)


def test_static_cache_decode_step_traces_as_one_graph(debug_model):
    debug_model.eval()
    ids, mask = left_padded_batch(lengths=(9, 5))
    cache = StaticCache(config=debug_model.config, max_cache_len=32)
    with torch.no_grad():
        debug_model(ids, attention_mask=mask, cache=cache)
    next_token = torch.zeros((2, 1), dtype=torch.long)
    positions = mask.sum(-1, keepdim=True)
    step_mask = torch.cat([mask, torch.ones((2, 1), dtype=torch.long)], dim=-1)

    def decode(token, position, attention):
        return debug_model(token, attention_mask=attention, position_ids=position, cache=cache).logits

    assert_one_graph(decode, next_token, positions, step_mask)


def test_fullgraph_compiled_training_step_equals_eager(debug_model):
    inputs, targets = windows(seed=1)
    debug_model.train()
    if debug_model.config.final_logit_softcapping is not None:  # the modern recipe with train.py's chunked head + loss
        debug_model.head_loss_function = functools.partial(chunked_head_cross_entropy, chunk_size=8)  # 4 chunks
    compiled = torch.compile(debug_model, fullgraph=True)
    results = []
    for forward in (debug_model, compiled):
        debug_model.zero_grad(set_to_none=True)
        loss = forward(input_ids=inputs, labels=inputs, shift_labels=targets, use_cache=False).loss
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in debug_model.named_parameters()}))
    (eager_loss, eager_grads), (compiled_loss, compiled_grads) = results
    torch.testing.assert_close(compiled_loss, eager_loss)
    assert eager_grads.keys() == compiled_grads.keys()
    for name in eager_grads:
        torch.testing.assert_close(compiled_grads[name], eager_grads[name], msg=name)


def test_training_attention_runs_sdpa_causal_without_a_mask(debug_model, monkeypatch):
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording_sdpa(*args, **kwargs):
        calls.append({"attn_mask": kwargs.get("attn_mask", args[3] if len(args) > 3 else None), **kwargs})
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording_sdpa)
    inputs, targets = windows(seed=2)
    debug_model.train()
    debug_model(input_ids=inputs, shift_labels=targets, use_cache=False).loss.backward()
    assert len(calls) == debug_model.config.n_layer
    assert all(call["attn_mask"] is None and call.get("is_causal") is True for call in calls)


def test_compiled_static_cache_generation_equals_gpt2(gpt2_model):
    ours = ours_from(gpt2_model)
    ids, mask = left_padded_batch(seed=21)
    kwargs = {"attention_mask": mask, "max_new_tokens": 10, "do_sample": False}
    expected = gpt2_model.generate(ids, pad_token_id=50256, **kwargs)  # dynamic cache, eager
    ours.forward = torch.compile(ours.forward, fullgraph=True)
    actual = ours.generate(ids, cache_implementation="static", **kwargs)
    assert torch.equal(actual, expected)
