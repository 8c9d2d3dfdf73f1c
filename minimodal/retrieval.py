"""Retrieval with CLIP, both ways, and Recall@K to measure it.

Embed a gallery of images and a set of captions once; then a caption finds its images by
ranking the gallery on cosine similarity (text -> image), and an image finds its
captions the same way (image -> text). Recall@K is the fraction of queries for which a
right answer is among the K best ranked: R@1 asks for the top answer, R@5 is more lenient.

A query may have several right answers: in the shapes world many images share the
caption "a red circle", and any of them answers that caption. ``relevant[i, j]`` says
whether item j answers query i; without it, the answer to query i is item i alone.

Ties count against the model: a wrong item that scores exactly as high as the best right
one is ranked before it. Otherwise a model that gives every item the same score would
find everything at rank 1.
"""

from __future__ import annotations

import torch

from minimodal.similarity import cosine_similarity_matrix


def recall_at_k(scores: torch.Tensor, k: int, relevant: torch.Tensor | None = None) -> float:
    """Fraction of queries (rows of ``scores``, (Q, N)) with a relevant item among their top k.

    A query is a hit when fewer than k wrong items score at least as high as its best
    relevant item; a query with no relevant item is a miss.
    """
    if scores.ndim != 2:
        raise ValueError(f"expected (queries, items) scores, got shape {tuple(scores.shape)}")
    if relevant is None:
        if scores.shape[0] != scores.shape[1]:
            raise ValueError(f"without ``relevant``, query i's answer is item i, so scores must be "
                             f"square; got {tuple(scores.shape)}")
        relevant = torch.eye(len(scores), dtype=torch.bool, device=scores.device)
    if relevant.shape != scores.shape or relevant.dtype != torch.bool:
        raise ValueError(f"relevant must be a boolean tensor of the scores' shape "
                         f"{tuple(scores.shape)}, got {relevant.dtype} {tuple(relevant.shape)}")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must be between 1 and {scores.shape[1]} (the number of items), got {k}")
    best_right = scores.masked_fill(~relevant, float("-inf")).amax(dim=1)   # (Q,)
    wrong_ahead = ((scores >= best_right[:, None]) & ~relevant).sum(dim=1)  # (Q,) ties count as ahead
    return (wrong_ahead < k).float().mean().item()


def same_caption(captions: list[str]) -> torch.Tensor:
    """(N, N) boolean: item j answers query i when their captions are the same text."""
    index = {text: i for i, text in enumerate(dict.fromkeys(captions))}
    ids = torch.tensor([index[text] for text in captions])
    return ids[:, None] == ids[None, :]


def retrieval_recalls(image_features: torch.Tensor, text_features: torch.Tensor,
                      relevant: torch.Tensor | None = None, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """R@K both ways for N images and their N captions; ``relevant`` is (images, texts)."""
    scores = cosine_similarity_matrix(image_features, text_features)        # (N_img, N_txt)
    relevant_t = None if relevant is None else relevant.T
    recalls = {}
    for k in ks:
        recalls[f"image->text R@{k}"] = recall_at_k(scores, k, relevant)
        recalls[f"text->image R@{k}"] = recall_at_k(scores.T, k, relevant_t)
    return recalls
