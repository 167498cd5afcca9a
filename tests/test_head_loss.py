"""The chunked head + loss (gpt_scratch.training.head_loss) against the plain head and transformers' causal-LM loss:
the same loss and gradients in fp32 (1e-5 relative), within bf16's rounding under autocast; and when the model
uses it."""

import functools

import pytest
import torch

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
from gpt_scratch.training.head_loss import chunked_head_cross_entropy

from conftest import MODERN


def tiny_model(architecture: str) -> GPTScratchForCausalLM:
    torch.manual_seed(0)
    modern = MODERN if architecture == "modern" else {}
    config = GPTScratchConfig.from_preset(
        "tiny", padded_vocab_size=50304, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0, **modern
    )
    return GPTScratchForCausalLM(config).train()


def batch(seed: int = 0, rows: int = 3, seq_len: int = 22) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    window = torch.randint(0, 50257, (rows, seq_len + 1), generator=generator)
    targets = window[:, 1:].clone()
    targets[0, :5] = -100  # ignored positions, as a padded or masked batch has
    return window[:, :-1], targets


def loss_and_gradients(model, head_loss, **inputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    model.head_loss_function = head_loss
    outputs = model(**inputs, use_cache=False)
    outputs.loss.backward()
    assert (outputs.logits is None) == (head_loss is not None)  # the chunked path never builds the logits
    grads = {name: None if param.grad is None else param.grad.clone() for name, param in model.named_parameters()}
    return outputs.loss.detach(), grads


def assert_gradients_close(actual: dict, expected: dict, rtol: float) -> None:
    assert actual.keys() == expected.keys()
    for name, grad in expected.items():
        scale = grad.abs().max().item()
        assert scale > 0, name
        torch.testing.assert_close(actual[name], grad, rtol=rtol, atol=rtol * scale, msg=name)


# GPT-2's tied head, and the modern recipe's untied, soft-capped one; chunks that do not divide the 66 positions, and
# one chunk; the targets as each caller gives them.
@pytest.mark.parametrize(
    "architecture, chunk_size, targets_as",
    [("gpt2", 7, "labels"), ("gpt2", 1024, "num_items_in_batch"), ("modern", 7, "shift_labels"),
     ("modern", 1024, "labels"), ("modern", 16, "num_items_in_batch")],
)  # fmt: skip
def test_chunked_head_loss_equals_plain_head_and_transformers_loss(architecture, chunk_size, targets_as):
    model = tiny_model(architecture)
    inputs, targets = batch()
    if targets_as == "labels":  # shifted inside the loss, as transformers' ForCausalLMLoss does
        arguments = {"input_ids": inputs, "labels": inputs.masked_fill(inputs % 7 == 0, -100)}
    else:
        arguments = {"input_ids": inputs, "shift_labels": targets}
        if targets_as == "num_items_in_batch":  # gradient accumulation's divisor
            arguments["num_items_in_batch"] = torch.tensor(150)
    plain_loss, plain_grads = loss_and_gradients(model, None, **arguments)  # transformers' loss on the full logits
    chunked = functools.partial(chunked_head_cross_entropy, chunk_size=chunk_size)
    chunked_loss, chunked_grads = loss_and_gradients(model, chunked, **arguments)
    torch.testing.assert_close(chunked_loss, plain_loss, rtol=1e-5, atol=0)
    assert_gradients_close(chunked_grads, plain_grads, rtol=1e-5)


def test_chunked_head_loss_under_bf16_autocast_is_within_bf16_rounding_of_the_plain_head():
    model = tiny_model("modern")
    inputs, targets = batch(seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain_loss, plain_grads = loss_and_gradients(model, None, input_ids=inputs, shift_labels=targets)
        chunked = functools.partial(chunked_head_cross_entropy, chunk_size=16)
        chunked_loss, chunked_grads = loss_and_gradients(model, chunked, input_ids=inputs, shift_labels=targets)
    assert chunked_loss.dtype == torch.float32
    torch.testing.assert_close(chunked_loss, plain_loss, rtol=4e-3, atol=0)  # bf16 keeps 8 bits: 2^-8 = 3.9e-3
    assert_gradients_close(chunked_grads, plain_grads, rtol=3e-2)
    assert all(grad.dtype == torch.float32 for grad in chunked_grads.values())  # fp32 master weights' gradients


def test_logits_are_skipped_only_in_training_or_when_asked():
    model = tiny_model("modern")
    model.head_loss_function = chunked_head_cross_entropy
    inputs, targets = batch(seed=2)
    trained = model(input_ids=inputs, shift_labels=targets)
    assert trained.logits is None and trained.loss is not None
    model.eval()  # evaluation with labels (validation loss, Trainer.evaluate) still gets logits, the plain way
    evaluated = model(input_ids=inputs, shift_labels=targets)
    assert evaluated.logits.shape == (*inputs.shape, model.config.vocab_size)
    torch.testing.assert_close(evaluated.loss, trained.loss, rtol=1e-5, atol=0)
    asked = model(input_ids=inputs, shift_labels=targets, skip_logits=True)  # transformers' Trainer's argument
    assert asked.logits is None
    torch.testing.assert_close(asked.loss, trained.loss, rtol=1e-5, atol=0)
    assert model(input_ids=inputs, shift_labels=targets, return_dict=False)[1].shape == evaluated.logits.shape
    assert model(input_ids=inputs).loss is None  # no labels: logits, whatever the switch says


def test_only_the_gradients_autograd_asks_for_are_computed():
    model = tiny_model("modern")
    inputs, targets = batch(seed=3)
    model.lm_head.weight.requires_grad_(False)  # a frozen head, as under LoRA
    plain_loss, plain_grads = loss_and_gradients(model, None, input_ids=inputs, shift_labels=targets)
    chunked_loss, chunked_grads = loss_and_gradients(
        model, chunked_head_cross_entropy, input_ids=inputs, shift_labels=targets
    )
    assert chunked_grads.pop("lm_head.weight") is None and plain_grads.pop("lm_head.weight") is None
    torch.testing.assert_close(chunked_loss, plain_loss, rtol=1e-5, atol=0)
    assert_gradients_close(chunked_grads, plain_grads, rtol=1e-5)
    with torch.no_grad():  # evaluation that asks for the loss alone (Trainer's skip_logits): no gradient work
        evaluated = model(input_ids=inputs, shift_labels=targets, skip_logits=True)
    torch.testing.assert_close(evaluated.loss, plain_loss, rtol=1e-5, atol=0)
