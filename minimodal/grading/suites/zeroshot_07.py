"""Graded checks for exercises/07_zero_shot_retrieval.ipynb: prompt ensembling and Recall@K.

Each check compares the learner's function with minimodal's on random inputs drawn from
``seed``, after a small case built so that the classic mistake gives a visibly wrong answer.
"""

from __future__ import annotations

import torch

from minimodal.grading.checks import Check, expect_close, expect_equal, expect_tensor
from minimodal.retrieval import recall_at_k
from minimodal.zeroshot import ensemble

NOTEBOOK = "07_zero_shot_retrieval"


def _check_ensemble(fn, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(3, 4, 8, generator=g)
    features[0] *= 50.0  # one template with long embeddings must not outvote the others
    norms = expect_tensor(fn(features), shape=(4, 8), what="the class embeddings").norm(dim=-1)
    if not torch.allclose(norms, torch.ones(4), atol=1e-4):
        raise AssertionError(f"the class embeddings have lengths {[round(n, 3) for n in norms.tolist()]}, "
                             "expected unit length: normalize the mean again")
    expect_close(fn(features), ensemble(features),
                 what="class embeddings when one template's embeddings are 50 times longer "
                      "(normalize each embedding before averaging)")
    for templates, classes, dim in [(1, 5, 4), (7, 3, 16), (4, 18, 64)]:
        features = torch.randn(templates, classes, dim, generator=g)
        features *= torch.rand(templates, classes, 1, generator=g) * 10 + 0.1
        expect_close(fn(features), ensemble(features),
                     what=f"class embeddings for {templates} templates and {classes} classes")


def _recall_cases(g: torch.Generator, ties: bool):
    for queries, items in [(5, 5), (8, 12), (20, 7)]:
        scores = (torch.randint(0, 3, (queries, items), generator=g).float() if ties
                  else torch.randn(queries, items, generator=g))
        relevant = torch.rand(queries, items, generator=g) < 0.25
        for k in sorted({1, 2, min(5, items)}):
            yield scores, k, relevant


def _expect_recall(fn, scores, k, relevant, hint: str) -> None:
    got = fn(scores.clone(), k, relevant.clone())
    got = float(got.item() if isinstance(got, torch.Tensor) else got)
    expected = recall_at_k(scores, k, relevant)
    expect_equal(round(got, 6), round(expected, 6),
                 what=f"recall_at_k with k={k} on {tuple(scores.shape)} scores{hint}")


def _check_recall(fn, seed: int) -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.8, 0.2, 0.9]])
    relevant = torch.tensor([[False, False, True], [False, True, True]])
    _expect_recall(fn, scores, 1, relevant, " (query 0's only answer is second: a miss at k=1; "
                                            "query 1 has two answers and the better one is first: a hit)")
    _expect_recall(fn, scores, 2, relevant, " (both queries have an answer among their two best)")
    g = torch.Generator().manual_seed(seed)
    for scores, k, relevant in _recall_cases(g, ties=False):
        _expect_recall(fn, scores, k, relevant, "")


def _check_recall_ties(fn, seed: int) -> None:
    _expect_recall(fn, torch.zeros(4, 4), 1, torch.eye(4, dtype=torch.bool),
                   " when every score is equal (a tie counts against the model: expect 0)")
    g = torch.Generator().manual_seed(seed)
    for scores, k, relevant in _recall_cases(g, ties=True):
        _expect_recall(fn, scores, k, relevant, " with tied scores (a wrong item that ties the "
                                                "best right one is ranked before it)")


OWN = {  # minimodal's functions that make up each answer: a learner's function must not call them
    "ensemble_classes": (ensemble,),
    "recall_at_k": (recall_at_k,),
}


CHECKS = [
    Check("prompt ensemble: mean of unit embeddings, normalized", "ensemble_classes", 3,
          _check_ensemble, timeout=10, references=OWN["ensemble_classes"]),
    Check("recall_at_k with several right answers", "recall_at_k", 3, _check_recall,
          timeout=10, references=OWN["recall_at_k"]),
    Check("recall_at_k counts ties against the model", "recall_at_k", 2, _check_recall_ties,
          timeout=10, references=OWN["recall_at_k"]),
]
