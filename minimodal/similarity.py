"""Comparing embeddings: cosine similarity between two sets, and the nearest neighbours.

Everything CLIP does at test time reduces to these two steps: score every image against
every text, then keep the best few.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_similarity_matrix(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(N, D) and (M, D) -> (N, M) cosine similarities. Rows are normalized first, so the
    score ignores an embedding's length and keeps only its direction."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (N, D) and (M, D) with the same D, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    return F.normalize(a, dim=-1, eps=eps) @ F.normalize(b, dim=-1, eps=eps).T


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(N, M) scores -> (N, k) column indices of each row's k highest scores, best first."""
    if not 1 <= k <= scores.shape[-1]:
        raise ValueError(f"k must be between 1 and {scores.shape[-1]} (the number of candidates), got {k}")
    return scores.topk(k, dim=-1).indices
