"""The graded checks of exercises/14_grounding.ipynb can fail: classic mistakes lose their points."""

from grading_cases import SuiteCases, define, failed_checks
from minimodal.grading.suites import detect_14

IMPORTS = "import torch\n"
# Right answers written unlike minimodal's: loops and plain Python where minimodal broadcasts.
RIGHT = IMPORTS + '''
def center_to_corners(boxes):
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)

def area(x0, y0, x1, y1):
    return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)

def generalized_iou(a, b):
    out = torch.zeros(len(a), len(b))
    for i, p in enumerate(a.tolist()):
        for j, q in enumerate(b.tolist()):
            inter = area(max(p[0], q[0]), max(p[1], q[1]), min(p[2], q[2]), min(p[3], q[3]))
            union = area(*p) + area(*q) - inter
            hull = area(min(p[0], q[0]), min(p[1], q[1]), max(p[2], q[2]), max(p[3], q[3]))
            out[i, j] = inter / union - (hull - union) / hull
    return out

def matching_cost(logits, pred_boxes, target_classes, target_boxes):
    probability = 1 / (1 + torch.exp(-logits))
    cost = torch.zeros(len(pred_boxes), len(target_boxes))
    giou = generalized_iou(center_to_corners(pred_boxes), center_to_corners(target_boxes))
    for t in range(len(target_boxes)):
        l1 = (pred_boxes - target_boxes[t]).abs().sum(dim=1)
        cost[:, t] = -probability[:, target_classes[t]] + 5 * l1 - 2 * giou[:, t]
    return cost

def ranked_hits(pred_boxes, scores, target_boxes, iou_threshold):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    free = [True] * len(target_boxes)
    hits = []
    for i in order:
        best, best_iou = None, -1.0
        for j in range(len(target_boxes)):
            p, q = pred_boxes[i].tolist(), target_boxes[j].tolist()
            inter = area(max(p[0], q[0]), max(p[1], q[1]), min(p[2], q[2]), min(p[3], q[3]))
            iou = inter / (area(*p) + area(*q) - inter)
            if free[j] and iou > best_iou:
                best, best_iou = j, iou
        hit = best is not None and best_iou >= iou_threshold
        if hit:
            free[best] = False
        hits.append(hit)
    return torch.tensor(hits, dtype=torch.bool)

def ap_from_ranked(is_hit, num_targets):
    hits = [bool(h) for h in is_hit]
    found, precision, recall = 0, [], []
    for rank, hit in enumerate(hits, start=1):
        found += hit
        precision.append(found / rank)
        recall.append(found / num_targets)
    total = 0.0
    for level in range(101):
        reachable = [p for p, r in zip(precision, recall) if r >= level / 100 - 1e-12]
        total += max(reachable, default=0.0)
    return total / 101
'''

CORNERS = {"corners from centre and size"}
GIOU_NEAR, GIOU_APART = "GIoU of overlapping boxes", "GIoU of boxes apart, by the enclosing box"
GIOU = {GIOU_NEAR, GIOU_APART}
COST = {"DETR's matching cost"}
HITS, DUPLICATE = "hits of a ranked list of boxes", "a duplicate box is a false positive"
AP, INTERPOLATED = "AP at 101 recall levels", "AP with interpolated precision"

GIOU_CODE = IMPORTS + '''
def generalized_iou(a, b):
    def area(x):
        return (x[..., 2] - x[..., 0] {plus}) * (x[..., 3] - x[..., 1] {plus})
    low = torch.maximum(a[:, None, :2], b[None, :, :2])
    high = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (high - low {plus}).clamp(min=0).prod(-1)
    union = area(a)[:, None] + area(b)[None, :] - inter
    hull = (torch.maximum(a[:, None, 2:], b[None, :, 2:]) - torch.minimum(a[:, None, :2], b[None, :, :2]) {plus}).prod(-1)
    return inter / union - {enclosing}
'''


def giou_code(plus: str = "", enclosing: str = "(hull - union) / hull") -> str:
    return GIOU_CODE.format(plus=plus, enclosing=enclosing)


COST_CODE = IMPORTS + '''
def matching_cost(logits, pred_boxes, target_classes, target_boxes):
    def corners(x):
        return torch.cat([x[..., :2] - x[..., 2:] / 2, x[..., :2] + x[..., 2:] / 2], dim=-1)
    a, b = corners(pred_boxes), corners(target_boxes)
    inter = (torch.minimum(a[:, None, 2:], b[None, :, 2:]) - torch.maximum(a[:, None, :2], b[None, :, :2])).clamp(min=0).prod(-1)
    union = (a[:, 2:] - a[:, :2]).prod(-1)[:, None] + (b[:, 2:] - b[:, :2]).prod(-1)[None, :] - inter
    hull = (torch.maximum(a[:, None, 2:], b[None, :, 2:]) - torch.minimum(a[:, None, :2], b[None, :, :2])).prod(-1)
    giou = inter / union - (hull - union) / hull
    l1 = (pred_boxes[:, None] - target_boxes[None]).abs().sum(-1)
    return -{probability}[:, target_classes] + 5 * l1 - 2 * giou
'''

HITS_CODE = IMPORTS + '''
def ranked_hits(pred_boxes, scores, target_boxes, iou_threshold):
    order = scores.argsort(descending=True)
    a, b = pred_boxes[order], target_boxes
    inter = (torch.minimum(a[:, None, 2:], b[None, :, 2:]) - torch.maximum(a[:, None, :2], b[None, :, :2])).clamp(min=0).prod(-1)
    union = (a[:, 2:] - a[:, :2]).prod(-1)[:, None] + (b[:, 2:] - b[:, :2]).prod(-1)[None, :] - inter
    iou = inter / union
    taken = torch.zeros(len(b), dtype=torch.bool)
    hits = torch.zeros(len(a), dtype=torch.bool)
    for rank in range(len(a)):
        row = {row}
        if len(b) and row.max() >= iou_threshold:
            best = row.argmax()
            {take}
            hits[rank] = True
    return hits
'''

AP_CODE = IMPORTS + '''
def ap_from_ranked(is_hit, num_targets):
    hits = torch.as_tensor(is_hit, dtype=torch.float64)
    found = hits.cumsum(0)
    precision = found / torch.arange(1, len(hits) + 1)
    recall = found / num_targets
    {smooth}
    levels = torch.linspace(0, 1, 101, dtype=torch.float64)
    first = torch.searchsorted(recall, levels)
    return torch.cat([precision, torch.zeros(1, dtype=torch.float64)])[first].mean().item()
'''
INTERPOLATE = "precision = precision.flip(0).cummax(0).values.flip(0)"

# mistake: (the learner's function, the checks it must fail and only those, a phrase its message says)
WRONG = {
    "corners a whole width from the centre": (IMPORTS + '''
def center_to_corners(boxes):
    c, s = boxes[..., :2], boxes[..., 2:]
    return torch.cat([c - s, c + s], dim=-1)
''', CORNERS, "half the width"),
    "IoU with an off-by-one area": (giou_code(plus="+ 1"), GIOU, "no pixel '+1'"),
    "GIoU without the enclosing box": (giou_code(enclosing="0"), GIOU, "without it, GIoU is just IoU"),
    "GIoU divided by the union": (giou_code(enclosing="(hull - union) / union"), GIOU, "appears twice"),
    "overlap not clamped": (IMPORTS + '''
def generalized_iou(a, b):
    inter = (torch.minimum(a[:, None, 2:], b[None, :, 2:]) - torch.maximum(a[:, None, :2], b[None, :, :2])).prod(-1)
    union = (a[:, 2:] - a[:, :2]).prod(-1)[:, None] + (b[:, 2:] - b[:, :2]).prod(-1)[None, :] - inter
    hull = (torch.maximum(a[:, None, 2:], b[None, :, 2:]) - torch.minimum(a[:, None, :2], b[None, :, :2])).prod(-1)
    return inter / union - (hull - union) / hull
''', GIOU, "clamp the overlap"),
    "softmax over the queries": (COST_CODE.format(probability="logits.softmax(-1)"), COST, "not a softmax"),
    "plus the probability": (COST_CODE.format(probability="(-logits.sigmoid())"), COST, "minus the probability"),
    "a duplicate counted as a hit": (HITS_CODE.format(row="iou[rank]", take="pass"), {HITS, DUPLICATE}, "duplicate"),
    "the first free object above the threshold": (HITS_CODE.format(
        row="iou[rank].masked_fill(taken, -1.0)",
        take="best = int(((iou[rank] >= iou_threshold) & ~taken).nonzero()[0]); taken[best] = True"),
        {DUPLICATE}, "overlaps most"),
    "boxes left in the order given": (HITS_CODE.replace("order = scores.argsort(descending=True)",
                                                        "order = torch.arange(len(scores))").format(
        row="iou[rank].masked_fill(taken, -1.0)", take="taken[best] = True"), {HITS}, "sort by score"),
    "AP without interpolation": (AP_CODE.format(smooth=""), {INTERPOLATED}, "make precision monotone"),
    "AP as the mean precision at the hits": (IMPORTS + '''
def ap_from_ranked(is_hit, num_targets):
    hits = torch.as_tensor(is_hit, dtype=torch.float64)
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1)
    return (precision * hits).sum().item() / num_targets
''', {AP, INTERPOLATED}, "not at the hits"),
}


class TestGroundingSuite(SuiteCases):
    suite = detect_14
    right = RIGHT
    wrong = WRONG
    # one mistake per function: the grader must take their checks' points and leave the others
    graded = ("corners a whole width from the centre", "IoU with an off-by-one area", "softmax over the queries",
              "the first free object above the threshold", "AP without interpolation")


def test_the_right_version_of_each_wrong_one_passes():
    """The templates the mistakes are made from are right once the mistake is taken out."""
    assert failed_checks(detect_14.CHECKS, "generalized_iou", define(giou_code(), "generalized_iou")) == {}
    assert failed_checks(detect_14.CHECKS, "matching_cost",
                         define(COST_CODE.format(probability="logits.sigmoid()"), "matching_cost")) == {}
    assert failed_checks(detect_14.CHECKS, "ranked_hits", define(HITS_CODE.format(
        row="iou[rank].masked_fill(taken, -1.0)", take="taken[best] = True"), "ranked_hits")) == {}
    assert failed_checks(detect_14.CHECKS, "ap_from_ranked", define(AP_CODE.format(smooth=INTERPOLATE),
                                                                    "ap_from_ranked")) == {}
