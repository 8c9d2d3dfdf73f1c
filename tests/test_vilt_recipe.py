"""The course's ViLT: its reading of questions and images, and the trained checkpoint, which
transformers' ViltForQuestionAnswering loads as it stands."""

from __future__ import annotations

import pytest
import torch
from transformers import ViltForQuestionAnswering

from minimodal.data.shapes import ShapesConfig, ShapesWorld
from minimodal.data.transforms import CLIP_MEAN, CLIP_STD
from minimodal.vilt_recipe import (CHECKPOINT, ViltRecipe, load_shapes_vilt, predict_vilt, question_batch,
                                   resized_pixels)
from minimodal.vqa_train import accuracy_by_kind, blind_answers


def test_each_patch_of_the_resized_image_is_one_grid_cell():
    world = ShapesWorld(ShapesConfig(min_shapes=1, max_shapes=1, image_size=64))
    scenes = [world.scene("test", i) for i in range(20)]
    pixels = resized_pixels(world.render(scenes), 48)                              # (20, 3, 48, 48)
    assert pixels.shape == (20, 3, 48, 48)
    background = ((torch.tensor(world.config.background) / 255 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD))
    ink = (pixels - background.view(1, 3, 1, 1)).abs().sum(dim=1)                  # (20, 48, 48)
    per_patch = ink.view(20, 3, 16, 3, 16).sum(dim=(2, 4)).flatten(1)              # (20, 9)
    cells = torch.tensor([scene[0].row * 3 + scene[0].col for scene in scenes])
    assert (per_patch.argmax(dim=1) == cells).all()
    assert (per_patch.max(dim=1).values > 0.97 * per_patch.sum(dim=1)).all()      # the shape stays in its cell


@pytest.fixture(scope="module")
def trained():
    return load_shapes_vilt()   # trains and exports it first when build/ does not hold it


def test_questions_are_read_between_bos_and_eos(trained):
    _, data = trained
    pixels = resized_pixels(data.test.images[:5], 48)
    questions = torch.arange(6)
    ids, mask, images = question_batch(data.test, pixels, questions)
    assert torch.equal(mask.sum(dim=1), data.test.lengths[questions])
    assert (ids[:, 0] == data.vocab.bos).all()
    assert all(ids[i, n - 1] == data.vocab.eos for i, n in enumerate(mask.sum(dim=1).tolist()))
    assert torch.equal(images, pixels[data.test.image_index[questions]])


@torch.no_grad()
def test_transformers_loads_the_checkpoint_and_answers_alike(trained):
    model, data = trained
    reference = ViltForQuestionAnswering.from_pretrained(CHECKPOINT).eval()
    pixels = resized_pixels(data.test.images, ViltRecipe().image_size)
    ids, mask, images = question_batch(data.test, pixels, torch.arange(12))
    theirs = reference(input_ids=ids, attention_mask=mask, pixel_values=images,
                       pixel_mask=torch.ones(12, 48, 48, dtype=torch.long)).logits
    torch.testing.assert_close(model(ids, mask, images).logits, theirs, atol=1e-4, rtol=0)
    assert [reference.config.id2label[i] for i in range(len(data.answers))] == data.answers


def test_the_trained_vilt_reads_the_image(trained):
    model, data = trained
    ours = accuracy_by_kind(predict_vilt(model, data.test, ViltRecipe().image_size), data.test)
    blind = accuracy_by_kind(blind_answers(data.train, data.test), data.test)
    assert ours["all"] > blind["all"] + 0.35         # measured: blind + 0.48
    assert ours["color"] > blind["color"] + 0.55     # + 0.75
    assert ours["count"] > blind["count"] + 0.35     # + 0.52
    assert ours["shape"] > blind["shape"] + 0.35     # + 0.52
