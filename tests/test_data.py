"""Preprocessing equals transformers' CLIPImageProcessor; loaders give what they promise."""

import numpy as np
import pytest
import torch
from PIL import Image

from minimodal.data import clip_preprocess, clip_preprocess_batch, load_easy_vqa, load_photo, load_photos
from minimodal.data.photos import PHOTOS

transformers = pytest.importorskip("transformers", reason="the 'ref' extra is not installed")


@pytest.fixture(scope="module")
def reference():
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    processor = CLIPImageProcessorPil()
    return lambda image: processor(images=image, return_tensors="pt")["pixel_values"][0]


def converted(image: Image.Image, mode: str) -> Image.Image:
    if mode == "I;16":
        return image.convert("L").convert("I").point(lambda v: v * 200).convert("I;16")
    if mode == "F":
        return image.convert("L").convert("F")
    return image.convert(mode)


MODES = ["RGB", "1", "L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F"]
SIZES = [(1, 1), (2, 7), (224, 224), (451, 300), (300, 451), (1000, 13), (225, 224)]


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "rocket", "camera", "logo"])
def test_real_photos_match_clip_image_processor(reference, name):
    photo = load_photo(name)
    assert (clip_preprocess(photo) - reference(photo)).abs().max() <= 1e-5


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_and_size_matches_clip_image_processor(reference, mode):
    photo = load_photo("chelsea")
    for size in SIZES:
        image = converted(photo.resize(size), mode)
        ours, theirs = clip_preprocess(image), reference(image)
        assert ours.shape == (3, 224, 224)
        assert (ours - theirs).abs().max() <= 1e-5, (mode, size)


def test_transparent_pixels_become_white():
    clear = Image.new("RGBA", (30, 30), (0, 0, 0, 0))
    pixels = clip_preprocess(clear)
    mean, std = torch.tensor([0.48145466, 0.4578275, 0.40821073]), torch.tensor([0.26862954, 0.26130258, 0.27577711])
    assert torch.allclose(pixels[:, 100, 100], (1 - mean) / std, atol=1e-6)


def test_paths_are_accepted(tmp_path):
    path = tmp_path / "cat.png"
    load_photo("chelsea").save(path)
    assert torch.equal(clip_preprocess(path), clip_preprocess(Image.open(path)))


def test_a_corrupt_file_is_named(tmp_path):
    path = tmp_path / "broken.png"
    buffer = tmp_path / "whole.png"
    load_photo("chelsea").save(buffer)
    path.write_bytes(buffer.read_bytes()[:2000])
    with pytest.raises(ValueError, match="broken.png is a corrupt or truncated image"):
        clip_preprocess(path)


def test_a_non_image_file_is_named(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a picture")
    with pytest.raises(ValueError, match="notes.txt is not an image"):
        clip_preprocess(path)


def test_missing_file_and_wrong_type_say_what_is_accepted(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        clip_preprocess(tmp_path / "nothing.png")
    with pytest.raises(TypeError, match="expected a PIL.Image.Image, a path .* uint8 array"):
        clip_preprocess([[0, 0, 0]])
    with pytest.raises(TypeError, match="got an array of float64"):
        clip_preprocess(np.zeros((4, 4, 3)))


def test_batch_stacks_and_rejects_empty():
    batch = clip_preprocess_batch([load_photo("coffee"), load_photo("rocket")])
    assert batch.shape == (2, 3, 224, 224)
    with pytest.raises(ValueError, match="empty"):
        clip_preprocess_batch([])


def test_photos_load_and_unknown_names_are_listed():
    photos = load_photos()
    assert set(photos) == set(PHOTOS) and all(p.mode == "RGB" for p in photos.values())
    with pytest.raises(KeyError, match="available: astronaut"):
        load_photo("dog")


def test_easy_vqa_has_the_published_sizes():
    train, test = load_easy_vqa("train"), load_easy_vqa("test")
    assert train.images.shape == (4000, 3, 64, 64) and test.images.shape == (1000, 3, 64, 64)
    assert (len(train), len(test)) == (38575, 9673)
    assert len(train.answer_vocab) == 13 and set(train.answers) <= set(train.answer_vocab)
    assert int(train.image_index.max()) < 4000 and int(test.image_index.max()) < 1000
    yes_no = [k == "yes/no" for k in train.kinds]
    assert yes_no == [a in ("yes", "no") for a in train.answers]
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_easy_vqa("val")
