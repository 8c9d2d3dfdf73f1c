"""Boxes with phrases from the shapes world, and DETR's set loss: matched, focal, L1 and GIoU."""

import pytest
import torch
from transformers.loss.loss_for_object_detection import generalized_box_iou
from transformers.loss.loss_for_object_detection import sigmoid_focal_loss as reference_focal_loss

from minimodal.boxes import center_to_corners
from minimodal.data.grounding import grounding_batch, phrases, shape_box, targets
from minimodal.data.shapes import COLORS, SHAPES, Shape, ShapesConfig, ShapesWorld
from minimodal.detection_loss import DetectionTargets, detection_loss, sigmoid_focal_loss

HOLDOUT = frozenset({("red", "triangle")})


@pytest.mark.parametrize("kind", SHAPES)
def test_a_box_is_tight_around_the_drawn_shape(kind):
    """Each box's edges lie within a pixel of the outermost pixels the renderer covers."""
    world = ShapesWorld(ShapesConfig(image_size=128))
    for x, y, radius in [(0.5, 0.5, 0.14), (0.2, 0.75, 0.09), (0.8, 0.2, 0.12)]:
        shape = Shape(shape=kind, color="blue", size="large", row=1, col=1, x=x, y=y, radius=radius)
        image = world.render([(shape,)], supersample=8)[0]
        background = torch.tensor(world.config.background, dtype=torch.float32).view(3, 1, 1) / 255
        covered = (image - background).abs().amax(dim=0) > 0.02                          # (S, S)
        rows, cols = covered.nonzero(as_tuple=True)
        drawn = torch.tensor([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]) / 128
        box = center_to_corners(torch.tensor(shape_box(shape)))
        assert (box - drawn).abs().max() <= 1.5 / 128, (kind, box, drawn)


def test_the_vocabulary_leaves_out_the_held_out_pair():
    vocabulary = phrases(COLORS, SHAPES, exclude=HOLDOUT)
    kinds = [p.kind for p in vocabulary]
    assert [kinds.count(kind) for kind in ("colour-shape", "shape", "place", "relation")] == [17, 3, 68, 36]
    assert not [p.text for p in vocabulary if "red triangle" in p.text]
    assert {"the blue square on the left", "the triangle above the triangle"} <= {p.text for p in vocabulary}


def test_a_shape_is_never_in_a_relation_with_itself():
    lone = Shape("circle", "red", "large", row=0, col=0, x=0.17, y=0.17, radius=0.14)
    vocabulary = phrases(COLORS, SHAPES)
    _, labels, _ = targets((lone,), vocabulary)
    assert not any(vocabulary[q].kind == "relation" for q in labels[0].nonzero().flatten().tolist())


def test_each_shape_is_labelled_with_every_phrase_that_describes_it():
    red_circle = Shape("circle", "red", "large", row=2, col=0, x=0.17, y=0.83, radius=0.14)
    blue_square = Shape("square", "blue", "small", row=1, col=1, x=0.5, y=0.5, radius=0.09)
    vocabulary = phrases(COLORS, SHAPES)
    boxes, labels, names = targets((red_circle, blue_square), vocabulary)
    described = [{vocabulary[q].text for q in row.nonzero().flatten().tolist()} for row in labels]
    assert described == [{"red circle", "the circle", "the red circle on the left", "the red circle at the bottom",
                          "the circle left of the square", "the circle below the square"},
                         {"blue square", "the square", "the square right of the circle", "the square above the circle"}]
    assert [vocabulary[n].text for n in names] == ["red circle", "blue square"]
    assert torch.allclose(boxes[0], torch.tensor([0.17, 0.83, 0.28, 0.28]))


def test_a_batch_holds_one_target_set_per_image():
    world = ShapesWorld(ShapesConfig(image_size=64, holdout=HOLDOUT))
    vocabulary = phrases(COLORS, SHAPES, exclude=HOLDOUT)
    batch = grounding_batch(world, "train", 6, vocabulary, start=3)
    assert batch.images.shape == (6, 3, 64, 64)
    for scene, boxes, labels, names in zip(batch.scenes, batch.boxes, batch.labels, batch.names):
        assert boxes.shape == (len(scene), 4) and labels.shape == (len(scene), len(vocabulary))
        assert (names >= 0).all() and labels[torch.arange(len(scene)), names].all()


def test_focal_loss_equals_transformers():
    g = torch.Generator().manual_seed(0)
    logits, wanted = torch.randn(7, 11, generator=g) * 3, (torch.rand(7, 11, generator=g) < 0.2).float()
    ours = sigmoid_focal_loss(logits, wanted).mean(1).sum() / 4
    torch.testing.assert_close(ours, reference_focal_loss(logits, wanted, num_boxes=4), atol=1e-6, rtol=1e-6)


def one_image(seed: int = 0, queries: int = 5):
    """16 patches' logits and boxes for one image with 3 objects, and the objects."""
    g = torch.Generator().manual_seed(seed)
    boxes = torch.rand(1, 16, 4, generator=g) * 0.3 + 0.2
    target = DetectionTargets(boxes=torch.rand(3, 4, generator=g) * 0.3 + 0.2,
                              labels=torch.rand(3, queries, generator=g) < 0.4,
                              names=torch.tensor([0, 2, 4]))
    target.labels[torch.arange(3), target.names] = True
    return torch.randn(1, 16, queries, generator=g), boxes, target


def test_the_loss_is_computed_on_the_matched_pairs():
    """Written out independently: match by brute force over every injective choice, then each term."""
    import itertools
    logits, boxes, target = one_image()
    loss = detection_loss(logits, boxes, [target])
    giou = generalized_box_iou(center_to_corners(boxes[0]), center_to_corners(target.boxes))       # (16, 3)
    cost = (-2 * logits[0].sigmoid()[:, target.names] + 5 * torch.cdist(boxes[0], target.boxes, p=1) - 2 * giou)
    best = min(itertools.permutations(range(16), 3), key=lambda p: sum(cost[p[t], t] for t in range(3)))
    wanted = torch.zeros_like(logits[0])
    wanted[list(best)] = target.labels.float()
    matched = boxes[0, list(best)]
    torch.testing.assert_close(loss.l1, (matched - target.boxes).abs().sum() / 3)
    torch.testing.assert_close(loss.giou, (1 - giou[list(best), [0, 1, 2]]).sum() / 3)
    torch.testing.assert_close(loss.classification, reference_focal_loss(logits[0], wanted, 1) * logits.shape[-1] / 3)
    torch.testing.assert_close(loss.total, 2 * loss.classification + 5 * loss.l1 + 2 * loss.giou)


def test_a_perfect_box_costs_nothing_but_its_class_term_and_gradients_flow():
    logits, boxes, target = one_image(1)
    boxes = boxes.clone()
    boxes[0, [3, 8, 12]] = target.boxes
    boxes.requires_grad_(True)
    loss = detection_loss(logits, boxes, [target])
    assert loss.l1.item() == 0 and abs(loss.giou.item()) < 1e-6
    loss.total.backward()
    assert boxes.grad.abs().sum() > 0


def test_an_image_without_objects_teaches_no_object_everywhere():
    logits, boxes, _ = one_image(2)
    empty = DetectionTargets(torch.zeros(0, 4), torch.zeros(0, 5, dtype=torch.bool), torch.zeros(0, dtype=torch.long))
    loss = detection_loss(logits, boxes, [empty])
    torch.testing.assert_close(loss.classification, sigmoid_focal_loss(logits, torch.zeros_like(logits)).sum())
    assert loss.l1.item() == 0 and loss.giou.item() == 0


def test_one_target_set_per_image_is_required():
    logits, boxes, target = one_image()
    with pytest.raises(ValueError, match="one DetectionTargets per image: got 2 for 1 images"):
        detection_loss(logits, boxes, [target, target])
