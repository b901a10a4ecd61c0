"""Left padding: the one layout every batch of token rows takes here (so each row ends at the last column)."""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["left_pad"]


def left_pad(rows: Sequence[Sequence[int]], width: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows right-aligned in ``[N, width]``: the token ids (``pad_id`` before each row) and the 0/1 mask (long).

    An empty row is all padding with mask 0. Rows longer than ``width`` are a caller's error (torch raises).
    """
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if len(row):
            ids[i, width - len(row):] = torch.tensor(list(row), dtype=torch.long)
            mask[i, width - len(row):] = 1
    return ids, mask
