"""Our forward pass equals transformers' GPT2LMHeadModel on the same weights."""

import contextlib
import logging

import pytest
import torch
from transformers import DynamicCache

from conftest import left_padded_batch, make_gpt2, ours_from


def generate_style_positions(mask: torch.Tensor) -> torch.Tensor:
    """The position ids GPT-2's generate() builds from a padding mask (GPT2LMHeadModel.forward does not derive them)."""
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_left_padded_logits_equal_gpt2(attn):
    gpt2 = make_gpt2(attn_implementation=attn)
    ours = ours_from(gpt2, attn)
    ids, mask = left_padded_batch()
    with torch.no_grad():
        expected = gpt2(ids, attention_mask=mask, position_ids=generate_style_positions(mask)).logits
        actual = ours(ids, attention_mask=mask).logits  # positions derived from the mask inside
    real = mask.bool()
    torch.testing.assert_close(actual[real], expected[real])


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_unpadded_logits_equal_gpt2_with_default_positions(attn):
    gpt2 = make_gpt2(seed=3, attn_implementation=attn)
    ours = ours_from(gpt2, attn)
    ids = torch.randint(0, 50257, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, gpt2(ids).logits)


def test_left_padded_row_equals_row_run_alone(either_model):
    ids, mask = left_padded_batch(lengths=(9, 4))
    with torch.no_grad():
        batched = either_model(ids, attention_mask=mask).logits
        alone = either_model(ids[1:, -4:]).logits
    torch.testing.assert_close(batched[1, -4:], alone[0])


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("cache_kwarg", ["cache", "past_key_values"])
def test_cached_incremental_logits_equal_gpt2(attn, cache_kwarg):
    gpt2 = make_gpt2(seed=4, attn_implementation=attn)
    ours = ours_from(gpt2, attn)
    ids, mask = left_padded_batch(seed=5)
    prefix, step = ids[:, :-2], ids[:, -2:]
    with torch.no_grad():
        ref_cache = DynamicCache(config=gpt2.config)
        gpt2(prefix, attention_mask=mask[:, :-2], position_ids=generate_style_positions(mask)[:, :-2], cache=ref_cache)
        expected = gpt2(
            step, attention_mask=mask, position_ids=generate_style_positions(mask)[:, -2:], cache=ref_cache
        ).logits

        out = ours(prefix, attention_mask=mask[:, :-2], use_cache=True)
        assert out.cache.get_seq_length() == prefix.shape[1]
        # The old name still works, and warns as transformers' own models do since the rename to `cache`.
        deprecated = pytest.warns(FutureWarning, match="`past_key_values` is deprecated")
        with deprecated if cache_kwarg == "past_key_values" else contextlib.nullcontext():
            actual = ours(step, attention_mask=mask, use_cache=True, **{cache_kwarg: out.cache}).logits
        uncached = ours(ids, attention_mask=mask, use_cache=False).logits[:, -2:]
    torch.testing.assert_close(actual, expected)
    torch.testing.assert_close(actual, uncached)


def test_loss_with_ignored_labels_equals_gpt2(gpt2_model, our_model):
    ids, mask = left_padded_batch(seed=6)
    labels = ids.masked_fill(mask == 0, -100)
    labels[0, -3] = -100
    positions = generate_style_positions(mask)
    gpt2_out = gpt2_model(ids, attention_mask=mask, position_ids=positions, labels=labels)
    ours_out = our_model(ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(ours_out.loss, gpt2_out.loss)
    gpt2_out.loss.backward()
    ours_out.loss.backward()
    # Conv1D weights are transposed relative to ours.
    torch.testing.assert_close(
        our_model.transformer.h[0].attn.c_attn.weight.grad, gpt2_model.transformer.h[0].attn.c_attn.weight.grad.t()
    )
    torch.testing.assert_close(our_model.transformer.wte.weight.grad, gpt2_model.transformer.wte.weight.grad)
    gpt2_model.zero_grad()
    our_model.zero_grad()


def test_hidden_states_attentions_and_inputs_embeds_equal_gpt2():
    gpt2 = make_gpt2(seed=7, attn_implementation="eager")
    ours = ours_from(gpt2, "eager")
    ids = torch.randint(0, 50257, (2, 9))
    with torch.no_grad():
        expected = gpt2(ids, output_hidden_states=True, output_attentions=True)
        actual = ours(ids, output_hidden_states=True, output_attentions=True)
        from_embeds = ours(inputs_embeds=ours.transformer.wte(ids)).logits
    assert len(actual.hidden_states) == len(expected.hidden_states) == 3
    for ours_h, ref_h in zip(actual.hidden_states, expected.hidden_states):
        torch.testing.assert_close(ours_h, ref_h)
    for ours_a, ref_a in zip(actual.attentions, expected.attentions):
        torch.testing.assert_close(ours_a, ref_a)
    torch.testing.assert_close(from_embeds, expected.logits)


def test_return_dict_false_gives_loss_then_logits(our_model):
    ids = torch.randint(0, 50257, (1, 6))
    with torch.no_grad():
        loss, logits = our_model(ids, labels=ids, use_cache=False, return_dict=False)
        out = our_model(ids, labels=ids, use_cache=False)
    torch.testing.assert_close(loss, out.loss)
    torch.testing.assert_close(logits, out.logits)


def test_gradient_checkpointing_gives_same_gradients():
    ours = ours_from(make_gpt2(seed=8)).train()
    ids = torch.randint(0, 50257, (2, 16))
    ours(ids, labels=ids).loss.backward()
    plain = {n: p.grad.clone() for n, p in ours.named_parameters()}
    ours.zero_grad()
    ours.activation_checkpointing_enable()
    assert all(block.gradient_checkpointing for block in ours.transformer.h)
    ours(ids, labels=ids).loss.backward()
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, plain[name], msg=name)


def test_lm_head_is_tied_to_wte_after_save_and_load(tmp_path, our_model):
    from gpt_scratch import GPTScratchForCausalLM

    assert our_model.lm_head.weight is our_model.transformer.wte.weight
    our_model.save_pretrained(tmp_path)
    loaded = GPTScratchForCausalLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    torch.testing.assert_close(loaded.lm_head.weight, our_model.lm_head.weight)


def test_init_follows_gpt2_scaled_residual_projections():
    from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM

    torch.manual_seed(0)
    model = GPTScratchForCausalLM(GPTScratchConfig(n_layer=8, n_head=4, n_embd=256, vocab_size=4096))
    block = model.transformer.h[3]
    assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.attn.c_proj.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)  # 1/sqrt(2 * 8)
    assert block.mlp.c_proj.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)
    assert torch.count_nonzero(block.attn.c_attn.bias) == 0
    assert torch.equal(block.ln_1.weight, torch.ones(256))


def test_sequence_longer_than_n_positions_is_a_clear_error(our_model):
    too_long = torch.zeros((1, our_model.config.n_positions + 1), dtype=torch.long)
    with pytest.raises(ValueError, match=r"needs position 128, which exceeds n_positions \(128\)"):
        our_model(too_long)


def test_output_attentions_under_sdpa_warns_and_returns_gpt2_eager_weights(caplog):
    gpt2 = make_gpt2(seed=8, attn_implementation="eager")
    ours = ours_from(gpt2, "sdpa")
    ids = torch.randint(0, 50257, (2, 9))
    with torch.no_grad(), caplog.at_level(logging.WARNING):
        expected = gpt2(ids, output_attentions=True)
        actual = ours(ids, output_attentions=True)
    assert "returns no attention weights" in caplog.text
    assert len(actual.attentions) == 2
    for ours_a, ref_a in zip(actual.attentions, expected.attentions):
        torch.testing.assert_close(ours_a, ref_a)
    torch.testing.assert_close(actual.logits, expected.logits)


def test_attn_implementation_is_chosen_at_load(tmp_path, our_model):
    from gpt_scratch import GPTScratchForCausalLM

    our_model.save_pretrained(tmp_path)
    eager = GPTScratchForCausalLM.from_pretrained(tmp_path, attn_implementation="eager")
    sdpa = GPTScratchForCausalLM.from_pretrained(tmp_path, attn_implementation="sdpa")
    assert eager.config._attn_implementation == "eager"
    assert sdpa.config._attn_implementation == "sdpa"
    ids, mask = left_padded_batch(seed=9)
    with torch.no_grad():
        torch.testing.assert_close(
            eager(ids, attention_mask=mask).logits[mask.bool()], sdpa(ids, attention_mask=mask).logits[mask.bool()]
        )


def reference_loss_and_logits(model, ids, labels):
    """Logits and loss the textbook way, F.linear then F.cross_entropy on shifted positions."""
    hidden = model.transformer(ids, use_cache=False).last_hidden_state
    logits = torch.nn.functional.linear(hidden, model.lm_head.weight)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
    return logits, loss


def test_fused_head_gradients_equal_textbook_loss_also_when_logits_are_used_elsewhere():
    model = ours_from(make_gpt2(seed=10)).train()
    ids = torch.randint(0, 50257, (2, 12))
    labels = ids.clone()
    labels[1, :5] = -100

    logits, loss = reference_loss_and_logits(model, ids, labels)
    (loss + 0.01 * logits.square().mean()).backward()
    expected = {name: param.grad.clone() for name, param in model.named_parameters()}
    model.zero_grad()

    out = model(ids, labels=labels, use_cache=False)
    torch.testing.assert_close(out.loss, loss)
    torch.testing.assert_close(out.logits, logits)
    (out.loss + 0.01 * out.logits.square().mean()).backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, expected[name], msg=name)


def test_num_items_in_batch_turns_the_mean_into_a_share_of_the_batch(our_model):
    ids = torch.randint(0, 50257, (2, 10))
    with torch.no_grad():
        mean = our_model(ids, labels=ids).loss
        share = our_model(ids, labels=ids, num_items_in_batch=36).loss
    torch.testing.assert_close(share, mean * 18 / 36)  # 2 rows x 9 predicted tokens


def test_bf16_autocast_loss_matches_textbook_loss_under_autocast(our_model):
    ids = torch.randint(0, 50257, (2, 16))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = our_model(ids, labels=ids)
        _, expected = reference_loss_and_logits(our_model, ids, ids)
    assert out.logits.dtype == torch.bfloat16
    torch.testing.assert_close(out.loss.float(), expected.float(), rtol=1e-3, atol=1e-3)


def test_labels_of_the_wrong_shape_are_a_clear_error(our_model):
    with pytest.raises(ValueError, match=r"labels have shape \(2, 5\), expected \(2, 6\)"):
        our_model(torch.zeros((2, 6), dtype=torch.long), labels=torch.zeros((2, 5), dtype=torch.long))


def test_shift_labels_score_every_position_against_given_targets_like_transformers(gpt2_model, our_model):
    window = torch.randint(0, 50257, (2, 13))
    inputs, targets = window[:, :-1], window[:, 1:].contiguous()  # transformers views shift_labels flat
    with torch.no_grad():
        ours = our_model(inputs, labels=inputs, shift_labels=targets).loss
        reference = gpt2_model(inputs, labels=inputs, shift_labels=targets).loss  # transformers' ForCausalLMLoss
        logits = our_model(inputs).logits
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(ours, torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten()))
