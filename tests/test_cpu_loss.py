"""The opt-in CPU cross-entropy equals transformers' causal-LM loss in value and gradient."""

import pytest
import torch
from transformers.loss.loss_utils import ForCausalLMLoss

from gpt_scratch.training.cpu_loss import causal_lm_cross_entropy


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("num_items", [None, 37])
def test_lean_loss_equals_transformers_loss_and_gradient(padded, num_items):
    generator = torch.Generator().manual_seed(0)
    vocab = 1001
    full = torch.randn(3, 9, 1024 if padded else vocab, generator=generator)
    labels = torch.randint(0, vocab, (3, 9), generator=generator)
    labels[0, :4] = -100
    results = []
    for loss_function in (ForCausalLMLoss, causal_lm_cross_entropy):
        leaf = full.clone().requires_grad_()
        logits = leaf[..., :vocab]  # a padded model's logits are a view of the wider head output
        loss = loss_function(logits, labels, vocab_size=vocab, num_items_in_batch=num_items)
        loss.backward()
        results.append((loss.detach(), leaf.grad))
    (expected, expected_grad), (actual, actual_grad) = results
    torch.testing.assert_close(actual, expected)
    torch.testing.assert_close(actual_grad, expected_grad)


def test_lean_loss_with_shift_labels_equals_transformers_loss():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 300, generator=generator)
    targets = torch.randint(0, 300, (2, 5), generator=generator)
    expected = ForCausalLMLoss(logits, None, vocab_size=300, shift_labels=targets)
    torch.testing.assert_close(causal_lm_cross_entropy(logits, None, vocab_size=300, shift_labels=targets), expected)
