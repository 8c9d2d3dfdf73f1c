"""The course's pretrained shapes CLIP: transformers reads the export, the seed rebuilds it, it works.

The checkpoint is trained once (under build/) by the first test that needs it and reused
afterwards, by these tests and by the lessons.
"""

import json
from dataclasses import asdict

import pytest
import torch
import transformers
from transformers import CLIPModel
from transformers import CLIPTokenizer as HFCLIPTokenizer

from minimodal import pretrained
from minimodal.pretrained import (CHECKPOINT, Recipe, color_shape_classes, distinct_captions,
                                  load_shapes_clip, normalize, single_shapes, tokenize,
                                  train_shapes_clip, training_batches, zero_shot_accuracy)

transformers.logging.set_verbosity_error()


@pytest.fixture(scope="module")
def model():
    return load_shapes_clip()  # trains and exports it first when build/ does not hold it


def test_the_export_gives_the_same_logits_and_predictions_in_transformers(model):
    reference = CLIPModel.from_pretrained(CHECKPOINT).eval()
    batch = single_shapes("test", 64)
    pixels, ids = normalize(batch.images), tokenize(color_shape_classes())
    with torch.no_grad():
        ours, _ = model(pixels, ids)
        theirs = reference(input_ids=ids, pixel_values=pixels).logits_per_image
    assert ours.shape == theirs.shape == (64, 18)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5), (ours - theirs).abs().max()
    assert torch.equal(ours.argmax(dim=1), theirs.argmax(dim=1))


def test_the_exported_tokenizer_reads_in_transformers(model):
    theirs = HFCLIPTokenizer.from_pretrained(CHECKPOINT)
    captions = pretrained.shapes_world().sample("test", 20).captions
    ours = tokenize(captions)
    for caption, row in zip(captions, ours):
        expected = theirs(caption)["input_ids"]
        assert row[:len(expected)].tolist() == expected, caption


def test_zero_shot_accuracy_on_held_out_images_is_at_least_95_percent(model):
    assert zero_shot_accuracy(model, "test") >= 0.95


def test_the_folder_records_its_recipe(model):
    assert json.loads((CHECKPOINT / "recipe.json").read_text()) == asdict(Recipe())


def test_training_is_reproducible_from_the_seed():
    recipe = Recipe(steps=3, pool_size=96, batch_size=32, warmup_steps=1)
    first, _ = train_shapes_clip(recipe, device="cpu", progress=False)
    second, _ = train_shapes_clip(recipe, device="cpu", progress=False)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    third, _ = train_shapes_clip(Recipe(**{**asdict(recipe), "seed": 1}), device="cpu", progress=False)
    assert not torch.equal(first.logit_scale, third.logit_scale) or not torch.equal(
        first.visual.proj.weight, third.visual.proj.weight)


def test_a_batch_never_repeats_a_caption():
    recipe = Recipe(pool_size=256, batch_size=48)
    world = pretrained.shapes_world(max_shapes=recipe.max_shapes, seed=recipe.seed)
    captions = world.sample("train", recipe.pool_size).captions
    _, ids = training_batches(recipe, torch.device("cpu"))(7)
    assert len(ids) == 48
    assert len({tuple(row.tolist()) for row in ids}) == 48
    assert distinct_captions(["a", "b", "a", "c"], [0, 2, 1, 3], 3) == [0, 1, 3]
    assert len(set(captions)) < recipe.pool_size  # the pool does repeat captions


def test_a_pool_with_too_few_captions_is_an_error():
    with pytest.raises(ValueError, match="only 2 distinct captions"):
        distinct_captions(["a", "b", "a"], [0, 1, 2], 3)


def test_a_missing_checkpoint_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m minimodal.pretrained"):
        load_shapes_clip(tmp_path / "nothing-here", train_if_missing=False)
