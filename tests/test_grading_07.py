"""The graded checks of exercises/07_zero_shot_retrieval.ipynb can fail: classic mistakes lose their points."""

from grading_cases import SuiteCases
from minimodal.grading.suites import zeroshot_07

IMPORTS = "import torch\nimport torch.nn.functional as F\n"
RIGHT = IMPORTS + '''
def ensemble_classes(text_features):
    unit = text_features / text_features.norm(dim=-1, keepdim=True)
    mean = unit.sum(dim=0) / len(unit)
    return mean / mean.norm(dim=-1, keepdim=True)

def recall_at_k(scores, k, relevant):
    hits = 0
    for row, right in zip(scores.tolist(), relevant.tolist()):
        ranked = sorted(range(len(row)), key=lambda j: (-row[j], right[j]))  # ties: wrong first
        hits += any(right[j] for j in ranked[:k])
    return hits / len(scores)
'''
ENSEMBLE = {"prompt ensemble: mean of unit embeddings, normalized"}
TIES = {"recall_at_k counts ties against the model"}
RECALL = {"recall_at_k with several right answers"} | TIES

# mistake: (the learner's function, the checks it must fail and only those, a phrase its message says)
WRONG = {
    "averages unnormalized embeddings": (IMPORTS + '''
def ensemble_classes(text_features):
    return F.normalize(text_features.mean(dim=0), dim=-1)
''', ENSEMBLE, "normalize each embedding before averaging"),
    "forgets to normalize the mean": (IMPORTS + '''
def ensemble_classes(text_features):
    return F.normalize(text_features, dim=-1).mean(dim=0)
''', ENSEMBLE, "normalize the mean again"),
    "counts ties in the model's favour": (IMPORTS + '''
def recall_at_k(scores, k, relevant):
    best_right = scores.masked_fill(~relevant, float("-inf")).amax(dim=1)
    wrong_ahead = ((scores > best_right[:, None]) & ~relevant).sum(dim=1)
    return (wrong_ahead < k).float().mean().item()
''', TIES, "a tie counts against the model"),
    "ranks with topk, ties in any order": (IMPORTS + '''
def recall_at_k(scores, k, relevant):
    top = scores.topk(k, dim=1).indices
    return relevant.gather(1, top).any(dim=1).float().mean().item()
''', TIES, "tie"),
    "looks only at the first right answer": (IMPORTS + '''
def recall_at_k(scores, k, relevant):
    first = relevant.float().argmax(dim=1)
    target = scores.gather(1, first[:, None])
    ahead = ((scores >= target) & ~relevant).sum(dim=1)
    return ((ahead < k) & relevant.any(dim=1)).float().mean().item()
''', RECALL, "the better one is first"),
    "is off by one in k": (IMPORTS + '''
def recall_at_k(scores, k, relevant):
    best_right = scores.masked_fill(~relevant, float("-inf")).amax(dim=1)
    wrong_ahead = ((scores >= best_right[:, None]) & ~relevant).sum(dim=1)
    return (wrong_ahead <= k).float().mean().item()
''', RECALL, "a miss at k=1"),
}


class TestZeroShotSuite(SuiteCases):
    suite = zeroshot_07
    right = RIGHT
    wrong = WRONG
    graded = ("averages unnormalized embeddings", "counts ties in the model's favour")
