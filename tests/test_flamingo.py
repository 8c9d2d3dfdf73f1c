"""Flamingo's pieces against transformers (IDEFICS's resampler and gated layer, BLIP-2's
Q-Former), the closed gates, and the latest-image mask token by token."""

from __future__ import annotations

import pytest
import torch
from transformers import Blip2QFormerConfig, Blip2QFormerModel, IdeficsConfig
from transformers.models.idefics.modeling_idefics import IdeficsGatedCrossAttentionLayer
from transformers.models.idefics.perceiver import IdeficsPerceiverResampler

from minimodal.check import randomized
from minimodal.convert import CheckpointMismatch
from minimodal.convert_flamingo import (blip2_qformer_name, idefics_gated_name, idefics_resampler_name,
                                        load_renamed, renamed_state_dict)
from minimodal.flamingo import Flamingo, FlamingoConfig, GatedCrossAttentionBlock, closed_gates, latest_image_mask
from minimodal.lm import LMConfig
from minimodal.qformer import QFormer, QFormerConfig
from minimodal.resampler import PerceiverResampler, ResamplerConfig
from minimodal.vit import VisionConfig

IMAGE = 3


def idefics_config(width: int, visual: int, heads: int, mlp_width: int) -> IdeficsConfig:
    return IdeficsConfig(hidden_size=width, num_attention_heads=heads, intermediate_size=mlp_width,
                         hidden_act="silu", rms_norm_eps=1e-6, vision_config=dict(embed_dim=visual),
                         perceiver_config=dict(qk_layer_norms_perceiver=False))


def test_resampler_matches_idefics_perceiver(device):
    config = ResamplerConfig(width=32, latents=5, layers=2, heads=4)
    ours = randomized(PerceiverResampler(config), seed=1)
    theirs = IdeficsPerceiverResampler(idefics_config(48, 32, 4, 64), embed_dim=32, depth=2, n_heads=4,
                                       head_dim=8, n_latents=5)
    theirs.load_state_dict(renamed_state_dict(ours, idefics_resampler_name), strict=True)
    ours, theirs, features = ours.to(device), theirs.to(device).eval(), torch.randn(3, 17, 32, device=device)
    with torch.no_grad():
        torch.testing.assert_close(ours(features), theirs(features), atol=1e-5, rtol=0)


def test_resampler_gives_a_fixed_number_of_tokens_whatever_it_reads():
    resampler = PerceiverResampler(ResamplerConfig(width=16, latents=4, heads=2)).eval()
    for shape in [(2, 9, 16), (2, 64, 16), (2, 3, 64, 16)]:   # patches, more patches, frames of patches
        assert resampler(torch.randn(shape)).shape == (2, 4, 16)
    with pytest.raises(ValueError, match=r"\(batch, patches, 16\)"):
        resampler(torch.randn(2, 9, 8))


def gated_pair(seed: int = 2) -> tuple[GatedCrossAttentionBlock, IdeficsGatedCrossAttentionLayer]:
    ours = randomized(GatedCrossAttentionBlock(48, 32, heads=4, mlp_width=64), seed=seed)
    assert ours.attn_gate.abs().item() > 0.05 and ours.mlp_gate.abs().item() > 0.05  # gates open, or the test proves nothing
    theirs = IdeficsGatedCrossAttentionLayer(idefics_config(48, 32, 4, 64), layer_idx=0)
    theirs.load_state_dict(renamed_state_dict(ours, idefics_gated_name), strict=True)
    return ours, theirs.eval()


def test_gated_block_matches_idefics_gated_layer(device):
    ours, theirs = (m.to(device) for m in gated_pair())
    ids = torch.tensor([[5, IMAGE, 6, 7, IMAGE, 8, 9], [IMAGE, 5, 6, 7, 8, 9, 10]], device=device)
    mask, sees = latest_image_mask(ids, IMAGE, images=2, tokens_per_image=3)      # (B, 1, T, 6), (B, T)
    x, visual = torch.randn(2, 7, 48, device=device), torch.randn(2, 6, 32, device=device)
    additive = torch.zeros(mask.shape, device=device).masked_fill(~mask, torch.finfo(torch.float32).min)
    with torch.no_grad():
        expected = theirs(x, image_hidden_states=visual, image_attention_mask=additive,
                          cross_attention_gate=sees.float())
        torch.testing.assert_close(ours(x, visual, mask, sees), expected, atol=1e-5, rtol=0)


def test_tokens_read_only_the_latest_image():
    """Change the visual tokens of one image: only the tokens whose latest image it is move."""
    ours, _ = gated_pair()
    ids = torch.tensor([[5, IMAGE, 6, 7, IMAGE, 8, IMAGE, 9, 10]])
    mask, sees = latest_image_mask(ids, IMAGE, images=3, tokens_per_image=2)
    x, visual = torch.randn(1, 9, 48), torch.randn(1, 6, 32)
    with torch.no_grad():
        before = ours(x, visual, mask, sees)
        for image, readers in [(0, [1, 2, 3]), (1, [4, 5]), (2, [6, 7, 8])]:
            changed = visual.clone()
            changed[:, 2 * image:2 * image + 2] += 1.0
            moved = (ours(x, changed, mask, sees) - before).abs().amax(-1)[0] > 1e-6
            assert moved.nonzero().flatten().tolist() == readers, f"image {image}"


def test_latest_image_mask_token_by_token_with_three_images():
    ids = torch.tensor([[9, IMAGE, 5, 6, IMAGE, 7, IMAGE, 8, 8]])
    mask, sees = latest_image_mask(ids, IMAGE, images=3, tokens_per_image=2)
    latest = [None, 0, 0, 0, 1, 1, 2, 2, 2]       # by hand: the marker itself reads its own image
    for t, image in enumerate(latest):
        row = mask[0, 0, t].tolist()
        want = [False] * 6 if image is None else [j // 2 == image for j in range(6)]
        assert row == want, f"token {t}"
        assert sees[0, t].item() == (image is not None)


def test_more_markers_than_images_is_refused():
    ids = torch.tensor([[IMAGE, 5, IMAGE]])
    with pytest.raises(ValueError, match="2 <\\|image\\|> markers but only 1"):
        latest_image_mask(ids, IMAGE, images=1, tokens_per_image=4)


def test_qformer_matches_blip2_qformer(device):
    config = QFormerConfig(width=32, context_width=24, queries=6, layers=3, heads=4, mlp_width=40, cross_every=2)
    ours = randomized(QFormer(config), seed=3)
    theirs = Blip2QFormerModel(Blip2QFormerConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40, encoder_hidden_size=24,
        cross_attention_frequency=2, hidden_act="gelu", layer_norm_eps=1e-12)).eval()
    theirs.load_state_dict(renamed_state_dict(ours, blip2_qformer_name, skip=("queries",)), strict=True)
    ours, theirs, features = ours.to(device), theirs.to(device), torch.randn(2, 11, 24, device=device)
    with torch.no_grad():
        expected = theirs(query_embeds=ours.queries.expand(2, -1, -1), encoder_hidden_states=features)
        torch.testing.assert_close(ours(features), expected.last_hidden_state, atol=1e-5, rtol=0)
    assert [layer.cross_attn is not None for layer in ours.layers] == [True, False, True]


def test_loading_names_a_missing_tensor():
    ours = PerceiverResampler(ResamplerConfig(width=16, latents=2, heads=2))
    state = renamed_state_dict(ours, idefics_resampler_name)
    del state["blocks.1.0.q_proj.weight"]
    with pytest.raises(CheckpointMismatch, match=r"missing \(1\): blocks\.1\.0\.q_proj\.weight"):
        load_renamed(ours, state, idefics_resampler_name, "the IDEFICS resampler")


def tiny_flamingo(connector) -> Flamingo:
    """Heads 8 wide everywhere: CUDA's fused kernels take masked attention only at such widths."""
    torch.manual_seed(0)
    return Flamingo(FlamingoConfig(
        vision=VisionConfig(image_size=16, patch_size=8, width=16, layers=2, heads=2, embed_dim=None),
        lm=LMConfig(vocab_size=40, width=24, layers=3, heads=3, kv_heads=1, mlp_width=32),
        image_token_id=IMAGE, connector=connector)).eval()


@pytest.mark.parametrize("connector", [ResamplerConfig(width=16, latents=3, heads=2),
                                       QFormerConfig(width=16, context_width=16, queries=3, heads=2)])
def test_at_initialisation_flamingo_is_its_frozen_language_model(connector, device):
    model = tiny_flamingo(connector).to(device)
    ids = torch.tensor([[1, IMAGE, 5, 6, IMAGE, 7, 8], [1, 9, IMAGE, 10, 11, 12, 13]], device=device)
    pixels = torch.rand(2, 2, 3, 16, 16, device=device)
    with torch.no_grad():
        assert torch.equal(model(ids, pixels), model.language_model(ids))   # exactly: tanh(0) = 0
        for gated in model.gated:
            gated.attn_gate.fill_(0.5)
        assert not torch.allclose(model(ids, pixels), model.language_model(ids))
        with closed_gates(model):
            assert torch.equal(model(ids, pixels), model.language_model(ids))
        assert (model.gates()[:, 0] > 0.4).all()       # restored after the block


def test_flamingo_refuses_images_it_cannot_place():
    model = tiny_flamingo(ResamplerConfig(width=16, latents=3, heads=2))
    ids = torch.tensor([[1, IMAGE, 5]])
    with pytest.raises(ValueError, match="no pixels"):
        model(ids)
    with pytest.raises(ValueError, match=r"\(batch=1, images, patches, width\)"):
        model(ids, features=torch.randn(1, 4, 16))
    with pytest.raises(ValueError, match="patch features are 16 wide"):
        FlamingoConfig(vision=model.config.vision, lm=model.config.lm, image_token_id=IMAGE,
                       connector=ResamplerConfig(width=8))
