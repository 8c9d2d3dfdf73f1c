"""Recall@K both ways equals a brute-force ranking, ties counted against the model."""

import pytest
import torch

from minimodal.retrieval import recall_at_k, retrieval_recalls, same_caption


def brute_force_recall(scores: list[list[float]], relevant: list[list[bool]], k: int) -> float:
    """Sort each row by hand, a tie putting the wrong item first, and look at the first k."""
    hits = 0
    for row, right in zip(scores, relevant):
        ranked = sorted(range(len(row)), key=lambda j: (-row[j], right[j]))
        hits += any(right[j] for j in ranked[:k])
    return hits / len(scores)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 2, 5])
def test_equals_brute_force_with_ties_and_several_right_answers(seed, k):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 4, (12, 9), generator=g).float()  # few values: many ties
    relevant = torch.rand(12, 9, generator=g) < 0.2
    expected = brute_force_recall(scores.tolist(), relevant.tolist(), k)
    assert recall_at_k(scores, k, relevant) == pytest.approx(expected)


def test_without_relevant_the_answer_to_query_i_is_item_i():
    scores = torch.tensor([[0.9, 0.1, 0.0],
                           [0.8, 0.7, 0.1],    # item 1 is second
                           [0.3, 0.2, 0.1]])   # item 2 is last
    assert recall_at_k(scores, 1) == pytest.approx(1 / 3)
    assert recall_at_k(scores, 2) == pytest.approx(2 / 3)
    assert recall_at_k(scores, 3) == 1.0


def test_a_constant_scorer_finds_nothing():
    assert recall_at_k(torch.zeros(6, 6), 5) == 0.0


def test_image_to_text_ranks_rows_and_text_to_image_ranks_columns():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    texts = torch.tensor([[1.0, 0.1], [0.1, 1.0], [1.0, 0.0]])
    # cosines, image by text:  [[0.995, 0.100, 1.000],
    #                           [0.100, 0.995, 0.000],
    #                           [0.774, 0.774, 0.707]]
    recalls = retrieval_recalls(images, texts, ks=(1,))
    assert recalls["image->text R@1"] == pytest.approx(1 / 3)  # only image 1 ranks its text first
    assert recalls["text->image R@1"] == pytest.approx(2 / 3)  # text 2 finds image 0 first
    relevant = torch.eye(3, dtype=torch.bool)
    relevant[0, 2] = True  # text 2 also describes image 0
    recalls = retrieval_recalls(images, texts, relevant, ks=(1,))
    assert recalls["image->text R@1"] == pytest.approx(2 / 3)
    assert recalls["text->image R@1"] == 1.0


def test_same_caption_marks_equal_texts():
    relevant = same_caption(["a red circle", "a blue square", "a red circle"])
    assert relevant.tolist() == [[True, False, True], [False, True, False], [True, False, True]]


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="must be square"):
        recall_at_k(torch.zeros(2, 3), 1)
    with pytest.raises(ValueError, match="boolean tensor"):
        recall_at_k(torch.zeros(2, 2), 1, torch.eye(2))
    with pytest.raises(ValueError, match="k must be between 1 and 2"):
        recall_at_k(torch.zeros(2, 2), 3)
