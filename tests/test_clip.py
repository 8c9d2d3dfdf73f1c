"""CLIP's two towers meet in one space: shapes, the learned temperature and its cap."""

import math

import pytest
import torch
import torch.nn.functional as F

from minimodal.clip import CLIP, CLIPConfig
from minimodal.text import TextConfig
from minimodal.vit import VisionConfig


def tiny_clip(embed_dim: int = 16) -> CLIP:
    torch.manual_seed(0)
    return CLIP(CLIPConfig(
        vision=VisionConfig(image_size=32, patch_size=8, width=32, layers=1, heads=2, embed_dim=embed_dim),
        text=TextConfig(vocab_size=100, context_length=12, width=32, layers=1, heads=2,
                        embed_dim=embed_dim, eot_token_id=99)))


def inputs(images: int = 3, texts: int = 5):
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(images, 3, 32, 32, generator=g)
    ids = torch.randint(1, 99, (texts, 12), generator=g)
    ids[:, 7] = 99  # end-of-text at position 7
    return pixels, ids


def test_encoders_give_one_embedding_per_input():
    model = tiny_clip(embed_dim=16).eval()
    pixels, ids = inputs(images=3, texts=5)
    with torch.no_grad():
        assert model.encode_image(pixels).shape == (3, 16)
        assert model.encode_text(ids).shape == (5, 16)
        per_image, per_text = model(pixels, ids)
    assert per_image.shape == (3, 5) and per_text.shape == (5, 3)
    assert torch.equal(per_text, per_image.T)


def test_logits_are_scaled_cosine_similarities():
    model = tiny_clip().eval()
    pixels, ids = inputs()
    with torch.no_grad():
        per_image, _ = model(pixels, ids)
        image, text = model.encode_image(pixels), model.encode_text(ids)
    cosines = F.cosine_similarity(image[:, None, :], text[None, :, :], dim=-1)  # (3, 5), by broadcasting
    assert torch.allclose(per_image, cosines / 0.07, atol=1e-5)


def test_logit_scale_starts_at_log_of_one_over_0_07():
    model = tiny_clip()
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07), abs=1e-6)
    assert model.logit_scale.exp().item() == pytest.approx(1 / 0.07, rel=1e-6)
    assert model.logit_scale.requires_grad and model.logit_scale.ndim == 0


@pytest.mark.parametrize("log_scale, expected", [(math.log(50.0), 50.0), (math.log(1000.0), 100.0)])
def test_logit_scale_is_capped_at_100(log_scale, expected):
    model = tiny_clip().eval()
    pixels, ids = inputs()
    with torch.no_grad():
        model.logit_scale.fill_(log_scale)
        per_image, _ = model(pixels, ids)
        image, text = model.encode_image(pixels), model.encode_text(ids)
    cosines = F.cosine_similarity(image[:, None, :], text[None, :, :], dim=-1)
    assert torch.allclose(per_image, expected * cosines, atol=1e-4)


def test_a_capped_scale_gets_no_gradient_and_an_uncapped_one_does():
    model = tiny_clip()
    pixels, ids = inputs(images=4, texts=4)
    for log_scale, has_gradient in [(math.log(1000.0), False), (math.log(10.0), True)]:
        model.zero_grad()
        with torch.no_grad():
            model.logit_scale.fill_(log_scale)
        per_image, _ = model(pixels, ids)
        F.cross_entropy(per_image, torch.arange(4)).backward()
        assert (model.logit_scale.grad.abs().item() > 0) == has_gradient


def test_towers_must_share_the_embedding_size():
    with pytest.raises(ValueError, match="share embed_dim"):
        CLIPConfig(vision=VisionConfig(embed_dim=32), text=TextConfig(embed_dim=64))
