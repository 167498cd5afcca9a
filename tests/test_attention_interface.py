"""Attention goes through transformers' attention interface: one lookup and one call per layer, which is how
vLLM's Transformers backend (and any user-registered kernel) takes over attention (bench/vllm.sh runs vLLM itself)."""

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from conftest import make_gpt2, ours_from


def test_a_registered_attention_function_serves_every_layer_once_per_forward():
    calls = []

    def probe(module, query, key, value, attention_mask, **kwargs):
        calls.append(module.layer_idx)
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register("gpt_scratch_probe", probe)
    gpt2 = make_gpt2(seed=8)
    ours = ours_from(gpt2, "gpt_scratch_probe")
    ids = torch.randint(0, 50257, (2, 16), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        logits = ours(ids, use_cache=False).logits
    assert calls == list(range(gpt2.config.n_layer))
    torch.testing.assert_close(logits, gpt2(ids).logits)
