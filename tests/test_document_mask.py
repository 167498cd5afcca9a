"""document_mask: packed training windows in which tokens attend only within their own document."""

import torch
from accelerate import Accelerator

from gpt_scratch.training import train_step
from gpt_scratch.training.document_mask import document_position_ids

from conftest import make_gpt2, ours_from

EOT = 50256


def positions_by_loop(row: list[int]) -> list[int]:
    positions, position = [], 0
    for index, token in enumerate(row):
        position = 0 if token == EOT or index == 0 else position + 1
        positions.append(position)
    return positions


def test_positions_restart_at_every_end_of_text_token():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 50, (4, 64), generator=generator)
    ids[torch.rand(4, 64, generator=generator) < 0.1] = EOT
    ids[1, 0] = ids[2, 10] = ids[2, 11] = EOT  # a document opening the row, and an empty document
    expected = torch.tensor([positions_by_loop(row) for row in ids.tolist()])
    assert torch.equal(document_position_ids(ids, EOT), expected)


class OneWindow:
    def __init__(self, window: torch.Tensor) -> None:
        self.window = window

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.window[:, :-1], self.window[:, 1:]


def test_train_step_loss_equals_each_document_scored_alone_by_gpt2():
    gpt2 = make_gpt2(seed=5)
    ours = ours_from(gpt2).train()
    generator = torch.Generator().manual_seed(6)
    tail, second, third = (torch.randint(0, EOT, (n,), generator=generator) for n in (5, 8, 6))
    # A training window as the packer cuts it: the tail of a document begun in an earlier window, then two more.
    window = torch.cat([tail, torch.tensor([EOT]), second, torch.tensor([EOT]), third]).unsqueeze(0)  # (1, T + 1)
    inputs, targets = window[0, :-1], window[0, 1:]

    # Reference: GPT-2 runs each document's inputs alone (from position 0) and scores its next tokens.
    starts = [0, *(i for i, token in enumerate(inputs.tolist()) if token == EOT), len(inputs)]
    total = torch.zeros(())
    with torch.no_grad():
        for begin, end in zip(starts, starts[1:]):
            logits = gpt2(inputs[begin:end].unsqueeze(0)).logits[0]
            total += torch.nn.functional.cross_entropy(logits, targets[begin:end], reduction="sum")
    expected = total / len(inputs)

    def step_loss(eot_token_id):
        optimizer = torch.optim.SGD(ours.parameters(), lr=0.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        loss, _ = train_step(ours, ours, OneWindow(window), [optimizer], [scheduler], Accelerator(cpu=True), 1, 0.0,
                             eot_token_id)  # fmt: skip
        return loss

    torch.testing.assert_close(step_loss(EOT), expected)
    # Without the mask the later documents see the earlier ones: a different loss (the mask is what makes it equal).
    assert not torch.allclose(step_loss(None), expected, atol=1e-3)
