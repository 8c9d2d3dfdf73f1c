"""The course's trained detector: exported in transformers' format and read back identically;
its batches; AP and the pointing game on answers whose scores are known."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import OwlViTForObjectDetection

from minimodal.data.grounding import grounding_batch
from minimodal.data.transforms import normalize
from minimodal.owlvit import Detections
from minimodal.owlvit_eval import as_detections, phrase_ap, pointing_accuracy
from minimodal.owlvit_recipe import (CHECKPOINT, DetectorRecipe, batches, load_shapes_owlvit, training_data,
                                     training_phrases)
from minimodal.average_precision import average_precision
from minimodal.pretrained import shapes_world, tokenize


@pytest.fixture(scope="module")
def trained():
    return load_shapes_owlvit()  # trains and exports it first when build/ does not hold it


@torch.no_grad()
def test_the_export_gives_transformers_the_same_boxes_and_logits(trained):
    reference = OwlViTForObjectDetection.from_pretrained(CHECKPOINT).eval()
    images = normalize(shapes_world().sample("test", 4).images)
    ids = tokenize(["red circle", "the square", "the blue triangle on the left"])
    ours = trained(images, trained.embed_queries(ids))
    theirs = reference(input_ids=ids.repeat(4, 1), pixel_values=images, attention_mask=(ids > 0).long().repeat(4, 1))
    torch.testing.assert_close(ours.boxes, theirs.pred_boxes, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.logits, theirs.logits, atol=1e-5, rtol=0)
    recipe = json.loads((CHECKPOINT / "recipe.json").read_text())
    assert recipe["steps"] == DetectorRecipe().steps
    history = json.loads((CHECKPOINT / "history.json").read_text())
    assert len(history["loss"]) == DetectorRecipe().steps and history["loss"][-1] < history["loss"][0] / 100


def test_a_batch_is_a_function_of_its_step():
    recipe = DetectorRecipe(scenes=64, batch_size=8)
    batch_at = batches(recipe, "cpu")
    (pixels, ids, targets), (again, _, same) = batch_at(3), batch_at(3)
    assert torch.equal(pixels, again) and all(torch.equal(a.boxes, b.boxes) for a, b in zip(targets, same))
    assert not torch.equal(pixels, batch_at(4)[0])
    assert ids.shape == (len(training_phrases()), 24)
    for target in targets:  # each shape is matched by its colour-shape phrase, which describes it
        assert target.labels[torch.arange(len(target.names)), target.names].all()
    assert len(training_data(recipe)[1]) == 64
    colour_only = DetectorRecipe(phrase_kinds="colour-shape")
    assert {p.kind for p in training_phrases(colour_only)} == {"colour-shape"} and len(training_phrases(colour_only)) == 17


def test_a_missing_checkpoint_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m minimodal.owlvit_recipe"):
        load_shapes_owlvit(tmp_path / "nothing", train_if_missing=False)


def perfect_answers(batch, queries: int, patches: int = 64) -> Detections:
    """Patch k of image i holds shape k's exact box with logit 10 for its phrases, -10 for the rest;
    the other patches hold a box nowhere near, scored -10."""
    logits = torch.full((len(batch.boxes), patches, queries), -10.0)
    boxes = torch.tensor([0.02, 0.02, 0.01, 0.01]).repeat(len(batch.boxes), patches, 1)
    for i, (shape_boxes, described) in enumerate(zip(batch.boxes, batch.labels)):
        boxes[i, :len(shape_boxes)] = shape_boxes
        logits[i, :len(shape_boxes)] = torch.where(described, 10.0, -10.0)
    return Detections(logits=logits, boxes=boxes, class_embeds=torch.zeros(len(batch.boxes), patches, 1))


def test_perfect_answers_score_ap_one_and_a_missed_shape_costs_its_share():
    vocabulary = training_phrases()
    batch = grounding_batch(shapes_world(), "test", 12, vocabulary)
    found = perfect_answers(batch, len(vocabulary))
    detections, targets = as_detections(found, batch)
    aps = {q: ap for q, ap in average_precision(detections, targets).items() if ap == ap}
    assert aps and all(ap == 1.0 for ap in aps.values())
    first = int(batch.names[0][0])                     # the colour-shape phrase of image 0's first shape
    found.logits[0, 0, first] = -10.0                  # that shape is now scored like background
    found.boxes[0, 0] = torch.tensor([0.02, 0.02, 0.01, 0.01])
    detections, targets = as_detections(found, batch)
    assert average_precision(detections, targets)[first] < 1.0


def test_phrase_ap_names_each_scored_phrase_and_averages_each_kind():
    vocabulary = training_phrases()
    batch = grounding_batch(shapes_world(), "test", 12, vocabulary)
    found = perfect_answers(batch, len(vocabulary))
    found.boxes[:, :, 2:] *= 0.8        # every box 80% of its shape's size: IoU 0.64, a hit up to 0.60 only
    scores = phrase_ap(*as_detections(found, batch), vocabulary)
    described = {vocabulary[q].text for labels in batch.labels for q in labels.any(dim=0).nonzero().flatten().tolist()}
    assert set(scores.at_50) == described
    count, at_50, averaged = scores.of_kind(vocabulary, "colour-shape")
    assert count == len({vocabulary[int(n)].text for names in batch.names for n in names})
    assert at_50 == 1.0 and averaged == pytest.approx(3 / 10)   # hits at 0.50, 0.55 and 0.60 of ten thresholds
    with pytest.raises(ValueError, match="thresholds must include 0.5"):
        phrase_ap(*as_detections(found, batch), vocabulary, thresholds=(0.75,))


def test_the_pointing_game_counts_the_hottest_patch():
    vocabulary = training_phrases()
    batch = grounding_batch(shapes_world(), "test", 10, vocabulary)
    colour_shape = [q for q, p in enumerate(vocabulary) if p.kind == "colour-shape"]
    hot_on_target = torch.zeros(10, len(colour_shape), 8, 8)
    for i, (boxes, names) in enumerate(zip(batch.boxes, batch.names)):
        for box, name in zip(boxes, names.tolist()):
            column, row = int(box[0] * 8), int(box[1] * 8)   # the patch under the shape's centre
            hot_on_target[i, colour_shape.index(name), row, column] = 1.0
    accuracy, chance = pointing_accuracy(hot_on_target, batch, colour_shape)
    assert accuracy == 1.0 and 0.01 < chance < 0.2
    accuracy, _ = pointing_accuracy(hot_on_target.roll(4, dims=-1), batch, colour_shape)
    assert accuracy < 0.5
