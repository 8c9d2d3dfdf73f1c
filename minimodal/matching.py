"""DETR's bipartite matching: pair each target box with exactly one predicted box.

A detector makes a fixed number of predictions, more than there are objects. Training
needs to know which prediction answers for which target: we score every (prediction,
target) pair with a cost and pick the one-to-one assignment of least total cost, solved
exactly by the Hungarian algorithm, written here from scratch.
"""

from __future__ import annotations

import numpy as np
import torch

from minimodal.boxes import center_to_corners, pairwise_generalized_iou


def _as_cost_matrix(cost: torch.Tensor | np.ndarray | list[list[float]]) -> np.ndarray:
    """Any 2-D array of finite numbers -> a float64 numpy copy the solver may work on."""
    cost = torch.as_tensor(cost).detach().to("cpu", torch.float64)
    if cost.ndim != 2:
        raise ValueError(f"the cost must be a 2-D (N, M) matrix, got shape {tuple(cost.shape)}")
    if not torch.isfinite(cost).all():
        raise ValueError(f"the cost must be finite, got {int((~torch.isfinite(cost)).sum())} "
                         f"NaN or infinite entries")
    return cost.numpy()


def _match_rows_to_columns(cost: np.ndarray) -> np.ndarray:
    """(n, m) cost with n <= m -> (m,) the row given to each column, -1 for the unused ones.

    Rows join one at a time. Row `root` grows a shortest-path tree over the columns, where
    the length of an edge is its reduced cost cost[i, j] - u[i] - v[j], until it reaches a
    free column; flipping the path then matches one more row. Moving the potentials by
    each step's `delta` keeps every reduced cost >= 0 and the matched ones at 0, which is
    what makes the matching optimal once all rows are in.
    """
    n, m = cost.shape
    u, v = np.zeros(n), np.zeros(m)                  # potentials of the rows and the columns
    row_of_col = np.full(m, -1)
    for root in range(n):
        slack = np.full(m, np.inf)                   # (m,) shortest reduced distance found so far
        came_from = np.full(m, -1)                   # (m,) the column before it, -1 for the root
        in_tree = np.zeros(m, dtype=bool)            # (m,) columns whose distance is final
        row, prev_col = root, -1
        while True:
            reduced = cost[row] - u[row] - v         # (m,) edges out of the newest row
            shorter = ~in_tree & (reduced < slack)
            slack[shorter] = reduced[shorter]
            came_from[shorter] = prev_col
            col = int(np.where(in_tree, np.inf, slack).argmin())
            delta = slack[col]
            u[root] += delta                         # every row of the tree moves up by delta,
            u[row_of_col[in_tree]] += delta
            v[in_tree] -= delta                      # every column of the tree down by delta
            slack[~in_tree] -= delta
            in_tree[col] = True
            if row_of_col[col] == -1:                # a free column: the path is complete
                break
            row, prev_col = row_of_col[col], col
        while col != -1:                             # flip the path back to the root
            prev = came_from[col]
            row_of_col[col] = root if prev == -1 else row_of_col[prev]
            col = prev
    return row_of_col


def linear_sum_assignment(cost: torch.Tensor | np.ndarray | list[list[float]]
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """The one-to-one assignment of least total cost for an (N, M) cost matrix.

    Returns (rows, cols), two int64 tensors of min(N, M) indices sorted by row, so that
    cost[rows, cols].sum() is the minimum: the convention of scipy.optimize.linear_sum_assignment.

    DETR needs this so that each target gets exactly one prediction and the predictions
    left over learn to say "no object", instead of many predictions piling onto the same
    easy target. The solver is the Hungarian algorithm in its shortest-augmenting-path form
    (Kuhn-Munkres, Jonker-Volgenant): potentials u, v keep the reduced costs
    cost[i, j] - u[i] - v[j] non-negative, and each row adds one augmenting path found by
    Dijkstra-like scanning over those reduced costs. O(N^2 M) for N <= M.
    """
    cost = _as_cost_matrix(cost)
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:                                   # the solver wants no more rows than columns
        cost = cost.T
    row_of_col = _match_rows_to_columns(cost)
    cols = np.flatnonzero(row_of_col >= 0)
    rows = row_of_col[cols]
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows)
    return torch.from_numpy(rows[order]).long(), torch.from_numpy(cols[order]).long()


def matching_cost(logits: torch.Tensor, pred_boxes: torch.Tensor, target_classes: torch.Tensor,
                  target_boxes: torch.Tensor, class_weight: float = 1.0, l1_weight: float = 5.0,
                  giou_weight: float = 2.0) -> torch.Tensor:
    """The (P, T) cost of giving target t to prediction p, for one image.

        cost[p, t] = class_weight * -sigmoid(logits[p, target_classes[t]])
                   + l1_weight    * |pred_boxes[p] - target_boxes[t]|_1
                   + giou_weight  * -GIoU(corners(pred_boxes[p]), corners(target_boxes[t]))

    logits (P, C) score each prediction against the image's C text queries; each is its
    own sigmoid, as OWL-ViT classifies, not a softmax. Boxes are (cx, cy, w, h) in [0, 1].
    The L1 term is on centre-size boxes; GIoU, which L1 alone misses, compares boxes whatever
    their size. The default weights are DETR's.
    """
    if len(logits) != len(pred_boxes) or len(target_classes) != len(target_boxes):
        raise ValueError(f"expected logits (P, C), pred_boxes (P, 4), target_classes (T,) and "
                         f"target_boxes (T, 4), got {tuple(logits.shape)}, {tuple(pred_boxes.shape)}, "
                         f"{tuple(target_classes.shape)} and {tuple(target_boxes.shape)}")
    class_score = logits.sigmoid()[:, target_classes]                              # (P, T)
    l1 = (pred_boxes[:, None, :] - target_boxes[None, :, :]).abs().sum(dim=-1)      # (P, T)
    giou = pairwise_generalized_iou(center_to_corners(pred_boxes),
                                    center_to_corners(target_boxes))                # (P, T)
    return class_weight * -class_score + l1_weight * l1 + giou_weight * -giou


@torch.no_grad()
def hungarian_match(logits: torch.Tensor, pred_boxes: torch.Tensor, target_classes: torch.Tensor,
                    target_boxes: torch.Tensor, **weights: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred_indices, target_indices) of the cheapest one-to-one matching, for one image.

    Both are int64 on the device of `logits`, sorted by prediction; pred_boxes[pred_indices[k]]
    answers for target_boxes[target_indices[k]]. With no targets both are empty. The
    matching is a choice, not something to differentiate, hence no_grad. `weights` are
    matching_cost's class_weight, l1_weight and giou_weight.
    """
    cost = matching_cost(logits, pred_boxes, target_classes, target_boxes, **weights)  # (P, T)
    pred_indices, target_indices = linear_sum_assignment(cost)
    return pred_indices.to(logits.device), target_indices.to(logits.device)
