"""OWL-ViT against transformers' OwlViTForObjectDetection, and its pieces alone."""

from __future__ import annotations

import pytest
import torch
from transformers import OwlViTConfig as HFOwlViTConfig
from transformers import OwlViTForObjectDetection

from minimodal.check import randomized
from minimodal.clip import CLIP, CLIPConfig
from minimodal.convert import CheckpointMismatch
from minimodal.convert_owlvit import load_owlvit_state_dict, owlvit_config, to_owlvit_state_dict
from minimodal.owlvit import OWLViT, box_bias
from minimodal.text import TextConfig
from minimodal.vit import VisionConfig

EOT = 49407


def config(embed_dim: int = 24) -> CLIPConfig:
    """A 32-pixel image of 16 patches and two blocks per tower, each tower 24 wide."""
    return CLIPConfig(vision=VisionConfig(image_size=32, patch_size=8, width=24, layers=2, heads=2,
                                          embed_dim=embed_dim),
                      text=TextConfig(context_length=12, width=24, layers=2, heads=2, embed_dim=embed_dim))


def reference_of(model: OWLViT) -> OwlViTForObjectDetection:
    """transformers' detector built from its own config class, given our weights."""
    v, t = model.config.vision, model.config.text
    reference = OwlViTForObjectDetection(HFOwlViTConfig(
        text_config=dict(hidden_size=t.width, intermediate_size=t.mlp_width, num_hidden_layers=t.layers,
                         num_attention_heads=t.heads, max_position_embeddings=t.context_length),
        vision_config=dict(hidden_size=v.width, intermediate_size=v.mlp_width, num_hidden_layers=v.layers,
                           num_attention_heads=v.heads, image_size=v.image_size, patch_size=v.patch_size),
        projection_dim=model.config.embed_dim))
    reference.load_state_dict(to_owlvit_state_dict(model), strict=True)
    return reference.eval()


def phrases(n: int, generator: torch.Generator, length: int = 12) -> torch.Tensor:
    """(n, length) ids: start token, 1-8 random words, end of text, zero padding."""
    ids = torch.zeros(n, length, dtype=torch.long)
    for row in ids:
        words = int(torch.randint(1, 9, (), generator=generator))
        row[0] = 49406
        row[1:1 + words] = torch.randint(1, 49406, (words,), generator=generator)
        row[1 + words] = EOT
    return ids


@pytest.fixture(scope="module")
def models():
    model = randomized(OWLViT(config()), seed=3)
    return model, reference_of(model)


@torch.no_grad()
def test_logits_and_boxes_equal_transformers(models):
    model, reference = models
    generator = torch.Generator().manual_seed(0)
    pixels, ids = torch.randn(3, 3, 32, 32, generator=generator), phrases(5, generator)
    ours = model(pixels, model.embed_queries(ids))
    theirs = reference(input_ids=ids.repeat(3, 1), pixel_values=pixels, attention_mask=(ids > 0).long().repeat(3, 1))
    assert ours.logits.shape == theirs.logits.shape == (3, 16, 5)
    torch.testing.assert_close(ours.boxes, theirs.pred_boxes, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.logits, theirs.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.class_embeds, theirs.class_embeds, atol=1e-5, rtol=0)


@torch.no_grad()
def test_padded_queries_are_masked_like_transformers(models):
    """Images with different numbers of queries: transformers marks a padding query by a 0 first id."""
    model, reference = models
    generator = torch.Generator().manual_seed(1)
    pixels, ids = torch.randn(2, 3, 32, 32, generator=generator), phrases(6, generator)
    real = torch.tensor([[True, True, True], [True, False, False]])
    ids[4:] = 0                                            # image 2 has one query, then two paddings
    queries = torch.zeros(2, 3, model.config.embed_dim)
    queries[real] = model.embed_queries(ids[:4])
    ours = model(pixels, queries, query_mask=real)
    theirs = reference(input_ids=ids, pixel_values=pixels, attention_mask=(ids > 0).long())
    torch.testing.assert_close(ours.logits[:, :, :][real[:, None, :].expand(-1, 16, -1)],
                               theirs.logits[real[:, None, :].expand(-1, 16, -1)], atol=1e-5, rtol=0)
    assert (ours.logits[1, :, 1:] == torch.finfo(torch.float32).min).all()
    assert (theirs.logits[1, :, 1:] == torch.finfo(torch.float32).min).all()


def test_box_bias_equals_transformers(models):
    _, reference = models
    torch.testing.assert_close(box_bias(4), reference.box_bias, atol=0, rtol=0)
    torch.testing.assert_close(box_bias(5), reference.compute_box_bias(5, 5), atol=0, rtol=0)
    # Before training, patch (row 1, column 3) of a 5 x 5 grid starts on its own grid corner, one patch wide.
    torch.testing.assert_close(torch.sigmoid(box_bias(5))[1 * 5 + 3], torch.tensor([0.8, 0.4, 0.2, 0.2]),
                               atol=1e-3, rtol=0)


def test_round_trip_through_the_transformers_names(models):
    model, _ = models
    copy = load_owlvit_state_dict(OWLViT(config()), to_owlvit_state_dict(model))
    for name, tensor in model.state_dict().items():
        assert torch.equal(copy.state_dict()[name], tensor), name


def test_loading_is_strict(models):
    model, _ = models
    state = to_owlvit_state_dict(model)
    missing = {k: v for k, v in state.items() if k != "box_head.dense2.bias"}
    with pytest.raises(CheckpointMismatch, match=r"missing \(1\): box_head.dense2.bias"):
        load_owlvit_state_dict(OWLViT(config()), missing)
    misshapen = {**state, "class_head.logit_shift.weight": torch.zeros(2, 24)}
    with pytest.raises(CheckpointMismatch, match=r"wrong shape.*class_head.logit_shift.weight"):
        load_owlvit_state_dict(OWLViT(config()), misshapen)


def test_from_clip_copies_the_towers_and_the_heads_start_fresh():
    clip = randomized(CLIP(config()), seed=5)
    detector = OWLViT.from_clip(clip)
    for name, tensor in clip.state_dict().items():
        assert torch.equal(detector.clip.state_dict()[name], tensor), name
    assert not torch.equal(detector.box_head.dense0.weight, clip.visual.proj.weight)


def test_transformers_needs_embed_dim_equal_to_the_text_width():
    with pytest.raises(ValueError, match="embed_dim == the text width, got 16 and 24"):
        owlvit_config(config(embed_dim=16))
    assert owlvit_config(config())["projection_dim"] == 24


def test_queries_of_the_wrong_width_are_refused(models):
    model, _ = models
    with pytest.raises(ValueError, match=r"queries must be \(Q, 24\) or \(2, Q, 24\), got \(5, 16\)"):
        model(torch.zeros(2, 3, 32, 32), torch.zeros(5, 16))
