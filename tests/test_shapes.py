"""The shapes world: deterministic, held-out pairs really held out, and language true to the image."""

import re

import pytest
import torch

from minimodal.data import ShapesConfig, ShapesWorld
from minimodal.data.shapes import COLORS, NUMBER_WORDS

HOLDOUT = frozenset({("red", "triangle"), ("blue", "circle")})


@pytest.fixture(scope="module")
def world():
    return ShapesWorld(ShapesConfig(image_size=64, seed=3, holdout=HOLDOUT))


def test_same_config_gives_the_same_data(world):
    again = ShapesWorld(ShapesConfig(image_size=64, seed=3, holdout=HOLDOUT))
    a, b = world.sample("train", 50), again.sample("train", 50)
    assert torch.equal(a.images, b.images)
    assert a.captions == b.captions and a.questions == b.questions


def test_a_slice_equals_the_same_rows_of_a_larger_sample(world):
    whole, part = world.sample("test", 40), world.sample("test", 10, start=25)
    assert torch.equal(whole.images[25:35], part.images)
    assert whole.captions[25:35] == part.captions


def test_another_seed_gives_other_scenes():
    a = ShapesWorld(ShapesConfig(seed=0)).sample("train", 20).captions
    b = ShapesWorld(ShapesConfig(seed=1)).sample("train", 20).captions
    assert a != b


def test_images_are_float_in_unit_range(world):
    images = world.sample("train", 8).images
    assert images.shape == (8, 3, 64, 64) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1


def test_each_shape_is_drawn_in_its_colour_at_its_centre(world):
    batch = world.sample("train", 30)
    for image, scene in zip(batch.images, batch.scenes):
        for s in scene:
            row, col = int(s.y * 64), int(s.x * 64)
            expected = torch.tensor(COLORS[s.color]) / 255
            assert torch.allclose(image[:, row, col], expected, atol=1e-6), (s, image[:, row, col])


def test_the_corners_are_background(world):
    images = world.sample("train", 30).images
    background = torch.tensor(world.config.background) / 255
    for image in images:
        assert torch.allclose(image[:, 0, 0], background, atol=1e-6)


def test_holdout_pairs_never_appear_in_train_or_test_and_always_in_holdout(world):
    for split in ("train", "test"):
        for scene in world.sample(split, 300).scenes:
            assert not {(s.color, s.shape) for s in scene} & HOLDOUT
    for scene in world.sample("holdout", 100).scenes:
        assert {(s.color, s.shape) for s in scene} & HOLDOUT


def test_counts_in_captions_add_up_to_the_shapes_drawn(world):
    batch = world.sample("train", 200)
    numbers = {w: i for i, w in enumerate(NUMBER_WORDS)} | {"a": 1, "an": 1}
    pattern = re.compile(r"\b(a|an|two|three|four) (\w+) (circle|square|triangle)s?\b")
    for caption, scene in zip(batch.captions, batch.scenes):
        phrases = pattern.findall(caption)
        assert sum(numbers[n] for n, _, _ in phrases) == len(scene), caption
        assert sorted((c, k) for _, c, k in phrases) == \
            sorted({(s.color, s.shape) for s in scene}), caption


def test_spatial_captions_are_true(world):
    batch = world.sample("train", 300)
    checked = 0
    for caption, scene in zip(batch.captions, batch.scenes):
        m = re.fullmatch(r"(?:a|an|\w+) (\w+) (\w+?)s? (left of|right of|above|below) (?:a|an|\w+) (\w+) (\w+?)s?",
                         caption)
        if not m:
            continue
        c1, k1, rel, c2, k2 = m.groups()
        first = [s for s in scene if (s.color, s.shape) == (c1, k1)]
        second = [s for s in scene if (s.color, s.shape) == (c2, k2)]
        axis = {"left of": lambda p, q: p.x < q.x, "right of": lambda p, q: p.x > q.x,
                "above": lambda p, q: p.y < q.y, "below": lambda p, q: p.y > q.y}[rel]
        assert all(axis(p, q) for p in first for q in second), caption
        checked += 1
    assert checked > 20


def test_answers_follow_from_the_scene(world):
    batch = world.sample("train", 200)
    kinds = set()
    for scene, qas in zip(batch.scenes, batch.questions):
        for qa in qas:
            kinds.add(qa.kind)
            q = qa.question
            if m := re.fullmatch(r"how many (\w+)s are there\?", q):
                kind = m.group(1)
                expected = len(scene) if kind == "shape" else sum(s.shape == kind for s in scene)
                assert qa.answer == str(expected), q
            elif m := re.fullmatch(r"is there an? (\w+) (\w+)\?", q):
                present = any((s.color, s.shape) == m.groups() for s in scene)
                assert qa.answer == ("yes" if present else "no"), q
            elif m := re.fullmatch(r"what color is the (\w+)\?", q):
                assert [s.color for s in scene if s.shape == m.group(1)] == [qa.answer], q
            elif m := re.fullmatch(r"what shape is the (\w+) object\?", q):
                assert [s.shape for s in scene if s.color == m.group(1)] == [qa.answer], q
    assert kinds == {"color", "shape", "count", "exists", "spatial"}


def test_dataset_items_match_the_batch(world):
    dataset = world.dataset("train", 10)
    batch = world.sample("train", 10)
    item = dataset[7]
    assert torch.equal(item["image"], batch.images[7]) and item["caption"] == batch.captions[7]
    assert len(dataset) == 10
    with pytest.raises(IndexError):
        dataset[10]


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_shapes=12), "max_shapes"),
    (dict(image_size=8), "image_size"),
    (dict(colors=("red", "pink")), "pink"),
    (dict(holdout=frozenset({("pink", "circle")})), "holdout pair"),
])
def test_bad_configs_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShapesConfig(**kwargs)


def test_unknown_split_is_an_error(world):
    with pytest.raises(ValueError, match="split must be one of"):
        world.sample("validation", 3)
