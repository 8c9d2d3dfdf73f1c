"""minimodal's ViT against transformers' CLIPVisionModel (inside CLIPModel) with the same weights."""

import pytest
import torch
import torch.nn.functional as F

from clip_reference import SMALL_SHAPES, assert_tower_matches_transformers
from minimodal.vit import VisionConfig, VisionTransformer, patchify


def test_patchify_then_linear_equals_strided_conv():
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 32, 48)
    weight = torch.randn(20, 3, 8, 8)
    by_conv = F.conv2d(pixels, weight, stride=8).flatten(2).transpose(1, 2)  # (B, N, D)
    by_reshape = patchify(pixels, 8) @ weight.reshape(20, -1).T
    torch.testing.assert_close(by_reshape, by_conv, atol=1e-5, rtol=1e-5)


def test_patchify_reading_order_and_pixels():
    pixels = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    patches = patchify(pixels, 2)
    assert patches.shape == (2, 6, 12)
    # patch 4 is row 1, column 1: pixels [2:4, 2:4] of every channel, channel first
    torch.testing.assert_close(patches[1, 4], pixels[1, :, 2:4, 2:4].flatten())


def test_patchify_rejects_sizes_that_do_not_divide():
    with pytest.raises(ValueError, match="does not split into 5x5 patches"):
        patchify(torch.zeros(1, 3, 32, 32), 5)


def test_config_rejects_image_size_not_a_multiple_of_patch():
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        VisionConfig(image_size=30, patch_size=8)


def test_wrong_pixel_shape_is_refused_with_the_expected_shape():
    vit = VisionTransformer(VisionConfig(image_size=32, patch_size=8, width=16, layers=1, heads=2, embed_dim=8))
    with pytest.raises(ValueError, match=r"\(batch, 3, 32, 32\)"):
        vit(torch.zeros(1, 3, 64, 64))


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("shape", sorted(SMALL_SHAPES))
def test_small_vits_match_transformers(shape, attn, device):
    assert_tower_matches_transformers(shape, "vision", attn, device)
