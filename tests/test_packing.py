"""Padding-free packing: position_ids that restart mark separate sequences in one row (as transformers'
DataCollatorWithFlattening produces); each attends only within itself, as if run alone."""

import pytest
import torch

from conftest import make_gpt2, ours_from


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_packed_row_logits_equal_each_sequence_run_alone_in_gpt2(attn):
    gpt2 = make_gpt2(seed=41, attn_implementation=attn)
    ours = ours_from(gpt2, attn)
    generator = torch.Generator().manual_seed(42)
    # 150 tokens in one row, more than n_positions (128): the limit applies to positions, which restart.
    sequences = [torch.randint(0, 50257, (length,), generator=generator) for length in (60, 50, 40)]
    packed_ids = torch.cat(sequences).unsqueeze(0)
    position_ids = torch.cat([torch.arange(len(s)) for s in sequences]).unsqueeze(0)
    with torch.no_grad():
        packed = ours(packed_ids, position_ids=position_ids, use_cache=False).logits[0]
        alone = [gpt2(s.unsqueeze(0)).logits[0] for s in sequences]
    torch.testing.assert_close(packed, torch.cat(alone))


def test_packed_training_loss_equals_the_sequences_alone():
    gpt2 = make_gpt2(seed=43)
    ours = ours_from(gpt2)
    sequences = [torch.randint(0, 50257, (length,)) for length in (7, 11, 5)]
    ids = torch.cat(sequences).unsqueeze(0)
    positions = torch.cat([torch.arange(len(s)) for s in sequences]).unsqueeze(0)
    # DataCollatorWithFlattening's labels: -100 at each sequence's first token, so no prediction crosses a boundary.
    labels = torch.cat([torch.cat([torch.tensor([-100]), s[1:]]) for s in sequences]).unsqueeze(0)
    loss = ours(ids, position_ids=positions, labels=labels).loss
    per_sequence = [gpt2(s.unsqueeze(0), labels=s.unsqueeze(0)).loss * (len(s) - 1) for s in sequences]
    torch.testing.assert_close(loss, sum(per_sequence) / sum(len(s) - 1 for s in sequences))
