"""Bad input, tried as a new user would: each gets an error saying what was wrong and what is
accepted, or a correct result. (Image modes, corrupt files, over-long text and strict
checkpoint loading are tested beside the code they guard.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from minimodal.clip import CLIP, CLIPConfig
from minimodal.convert import load_hf_checkpoint, save_hf_checkpoint
from minimodal.data.transforms import clip_preprocess
from minimodal.text import TextConfig
from minimodal.vit import VisionConfig

CONFIG = CLIPConfig(VisionConfig(image_size=32, patch_size=8, width=32, layers=1, heads=2, embed_dim=16),
                    TextConfig(vocab_size=100, context_length=16, width=32, layers=1, heads=2, embed_dim=16,
                               eot_token_id=99))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CLIP(CONFIG).eval()


def test_uint8_pixels_are_refused_with_what_to_do(model):
    pixels = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with pytest.raises(TypeError, match="floating-point pixels.*got torch.uint8.*clip_preprocess"):
        model.encode_image(pixels)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_pixels_are_refused_not_turned_into_nan_embeddings(model, bad):
    pixels = torch.randn(2, 3, 32, 32)
    pixels[1, 2, 5, 7] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.encode_image(pixels)


def test_empty_batches_give_empty_embeddings(model):
    with torch.no_grad():
        images = model.encode_image(torch.zeros(0, 3, 32, 32))
        texts = model.encode_text(torch.zeros(0, 16, dtype=torch.long))
        per_image, per_text = model(torch.zeros(0, 3, 32, 32), torch.tensor([[1, 2, 99]]))
    assert images.shape == (0, 16) and texts.shape == (0, 16)
    assert per_image.shape == (0, 1) and per_text.shape == (1, 0)


def test_a_config_that_is_not_json_names_the_file(model, tmp_path):
    folder = save_hf_checkpoint(model, tmp_path / "ckpt")
    (folder / "config.json").write_text('{"projection_dim": 16,')  # cut short, as by a full disk
    with pytest.raises(ValueError, match=r"ckpt/config.json is not valid JSON"):
        load_hf_checkpoint(folder)
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"config.json holds a JSON list"):
        load_hf_checkpoint(folder)


def test_numpy_arrays_are_preprocessed_like_the_same_image():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    torch.testing.assert_close(clip_preprocess(rgb, size=32), clip_preprocess(Image.fromarray(rgb), size=32))
    gray = rgb[:, :, 0]
    torch.testing.assert_close(clip_preprocess(gray, size=32),
                               clip_preprocess(Image.fromarray(gray).convert("RGB"), size=32))
    rgba = np.dstack([rgb, np.full((40, 60), 255, dtype=np.uint8)])
    torch.testing.assert_close(clip_preprocess(rgba, size=32), clip_preprocess(rgb, size=32))


@pytest.mark.parametrize("array, error, message", [
    (np.zeros((3, 40, 60), dtype=np.uint8), ValueError, r"shape \(3, 40, 60\) \(channels last\)"),
    (np.zeros((40, 60, 3), dtype=np.float32), TypeError, "array of float32"),
])
def test_arrays_of_the_wrong_shape_or_type_say_what_is_accepted(array, error, message):
    with pytest.raises(error, match=message):
        clip_preprocess(array)


@pytest.mark.parametrize("size", [0, -4, 2.5, True])
def test_size_must_be_a_positive_integer(size):
    with pytest.raises(ValueError, match="size must be a positive number of pixels"):
        clip_preprocess(Image.new("RGB", (8, 8)), size=size)
