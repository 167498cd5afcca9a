"""Packed training windows without attention across documents.

Training packs documents back to back (``<|endoftext|>`` before each) into windows of T tokens, so by default a token
attends to the tail of whatever document came before it. With ``document_mask`` the window gets position ids that
restart at every ``<|endoftext|>``; the model reads restarting positions as packed sequences (transformers'
padding-free packing convention, as ``DataCollatorWithFlattening`` produces) and keeps attention inside each. The
first, partial document of a window starts at position 0 as well: its beginning is in an earlier window.
"""

import torch


def document_position_ids(input_ids: torch.Tensor, eot_token_id: int) -> torch.Tensor:
    """(B, T) positions that restart at 0 on every ``eot_token_id`` (the token that opens a document).

    ``[[5, 6, EOT, 7, 8, EOT, 9]]`` gives ``[[0, 1, 0, 1, 2, 0, 1]]``. No Python loop and no data-dependent shapes,
    so it compiles into the training step's graph.
    """
    index = torch.arange(input_ids.shape[-1], device=input_ids.device).expand_as(input_ids)  # (B, T)
    opens = torch.where(input_ids == eot_token_id, index, 0)  # where each document starts, 0 elsewhere
    document_start = torch.cummax(opens, dim=-1).values  # the start of the document each token is in
    return index - document_start
