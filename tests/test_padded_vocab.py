"""A padded vocabulary (padded_vocab_size) changes speed only: real ids score exactly as in GPT-2 with the same
weights, padded ids are never generated, and GPT-2 export drops the padded rows."""

import pytest
import torch

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
from gpt_scratch.modeling_gpt_scratch import state_dict_from_gpt2

from conftest import left_padded_batch, make_gpt2

PADDED = 50304


def padded_copy(gpt2, attn: str = "sdpa") -> GPTScratchForCausalLM:
    """Our model with gpt2's weights in the real rows and, in the padded rows, weights that would win every argmax."""
    model = GPTScratchForCausalLM(GPTScratchConfig.from_gpt2_config(gpt2.config, padded_vocab_size=PADDED))
    weights = state_dict_from_gpt2(gpt2.state_dict())
    extra = model.lm_head.weight[gpt2.config.vocab_size :].detach()
    for name in ("transformer.wte.weight", "lm_head.weight"):
        weights[name] = torch.cat([weights[name], 50.0 * extra])
    model.load_state_dict(weights, strict=True)
    model.config._attn_implementation = attn
    return model.eval()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_padded_model_scores_real_ids_exactly_like_gpt2(attn):
    gpt2 = make_gpt2(seed=31, attn_implementation=attn)
    ours = padded_copy(gpt2, attn)
    ids, mask = left_padded_batch(seed=32)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    with torch.no_grad():
        expected = gpt2(ids, attention_mask=mask, position_ids=positions).logits
        actual = ours(ids, attention_mask=mask).logits
    assert actual.shape[-1] == gpt2.config.vocab_size  # the padded ids are not there to be scored
    torch.testing.assert_close(actual[mask.bool()], expected[mask.bool()])

    ids = torch.randint(0, gpt2.config.vocab_size, (2, 12))
    labels = ids.clone()
    labels[0, 3:6] = -100
    expected_loss, actual_loss = gpt2(ids, labels=labels).loss, ours(ids, labels=labels).loss
    torch.testing.assert_close(actual_loss, expected_loss)
    expected_loss.backward()
    actual_loss.backward()
    real_rows = ours.lm_head.weight.grad[: gpt2.config.vocab_size]
    torch.testing.assert_close(real_rows, gpt2.lm_head.weight.grad)
    assert torch.count_nonzero(ours.lm_head.weight.grad[gpt2.config.vocab_size :]) == 0


def test_generate_never_emits_a_padded_id():
    gpt2 = make_gpt2(seed=33)
    ours = padded_copy(gpt2)
    ids, mask = left_padded_batch(seed=34)
    with torch.no_grad():
        hidden = ours.transformer(ids, attention_mask=mask).last_hidden_state[:, -1]
    # Unsliced, the padded rows would be chosen: the test can fail.
    assert (ours.lm_head(hidden).argmax(-1) >= gpt2.config.vocab_size).all()
    torch.manual_seed(0)
    sampled = ours.generate(ids, attention_mask=mask, max_new_tokens=16, do_sample=True, top_k=0, temperature=2.0)
    greedy = ours.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
    assert sampled.max() < gpt2.config.vocab_size
    assert torch.equal(
        greedy, gpt2.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=50256)
    )


def test_padded_model_exports_to_gpt2_without_the_padded_rows():
    gpt2 = make_gpt2(seed=35)
    exported = padded_copy(gpt2).to_gpt2()
    assert exported.transformer.wte.weight.shape[0] == gpt2.config.vocab_size
    ids = torch.randint(0, gpt2.config.vocab_size, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(exported(ids).logits, gpt2(ids).logits)


def test_padded_vocab_size_below_vocab_size_is_a_clear_error():
    with pytest.raises(ValueError, match=r"padded_vocab_size \(50000\) must be an integer >= vocab_size \(50257\)"):
        GPTScratchConfig(padded_vocab_size=50000)
