"""generate() is token-identical to GPT2LMHeadModel.generate on the same weights."""

import pytest
import torch

from conftest import left_padded_batch

GREEDY = {"max_new_tokens": 12, "do_sample": False}


def test_greedy_left_padded_batch_equals_gpt2(gpt2_model, our_model):
    ids, mask = left_padded_batch(seed=11)
    expected = gpt2_model.generate(ids, attention_mask=mask, pad_token_id=50256, **GREEDY)
    actual = our_model.generate(ids, attention_mask=mask, **GREEDY)
    assert torch.equal(actual, expected)


def test_beam_search_left_padded_batch_equals_gpt2(gpt2_model, our_model):
    ids, mask = left_padded_batch(seed=12)
    kwargs = {"max_new_tokens": 8, "num_beams": 4, "do_sample": False, "early_stopping": True}
    expected = gpt2_model.generate(ids, attention_mask=mask, pad_token_id=50256, **kwargs)
    actual = our_model.generate(ids, attention_mask=mask, **kwargs)
    assert torch.equal(actual, expected)


def test_sampling_under_same_seed_equals_gpt2(gpt2_model, our_model):
    ids, mask = left_padded_batch(seed=13)
    kwargs = {"max_new_tokens": 10, "do_sample": True, "top_k": 50, "top_p": 0.95, "temperature": 0.8}
    torch.manual_seed(1234)
    expected = gpt2_model.generate(ids, attention_mask=mask, pad_token_id=50256, **kwargs)
    torch.manual_seed(1234)
    actual = our_model.generate(ids, attention_mask=mask, **kwargs)
    assert torch.equal(actual, expected)


def test_left_padded_batch_equals_each_row_generated_alone(either_model):
    lengths = (10, 6, 2)
    ids, mask = left_padded_batch(seed=14, lengths=lengths)
    batched = either_model.generate(ids, attention_mask=mask, **GREEDY)
    for row, length in enumerate(lengths):
        alone = either_model.generate(ids[row : row + 1, -length:], **GREEDY)
        assert torch.equal(batched[row, -GREEDY["max_new_tokens"] :], alone[0, -GREEDY["max_new_tokens"] :]), row


@pytest.mark.parametrize("num_beams", [1, 4])
def test_use_cache_false_equals_use_cache_true(either_model, num_beams):
    ids, mask = left_padded_batch(seed=15)
    with_cache = either_model.generate(ids, attention_mask=mask, num_beams=num_beams, use_cache=True, **GREEDY)
    without = either_model.generate(ids, attention_mask=mask, num_beams=num_beams, use_cache=False, **GREEDY)
    assert torch.equal(with_cache, without)
