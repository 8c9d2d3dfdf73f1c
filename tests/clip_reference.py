"""transformers' CLIPModel and minimodal's CLIP holding the same random weights, for parity tests.

The reference is built from a transformers config (random init, no download); minimodal's
model gets its weights through convert.load_hf_state_dict, the loader under test.
"""

import pytest
import torch
from transformers import CLIPConfig as HFCLIPConfig
from transformers import CLIPModel

from minimodal.check import assert_close, assert_close_layers
from minimodal.clip import CLIP, CLIPConfig
from minimodal.convert import CheckpointMismatch, load_hf_state_dict
from minimodal.text import TextConfig
from minimodal.transformer import set_fused_attention
from minimodal.vit import VisionConfig

# (vision: image, patch, width, layers, heads; text: vocab, context, width, layers, heads; embed)
SMALL_SHAPES = {
    "tiny": (VisionConfig(image_size=32, patch_size=8, width=64, layers=2, heads=4, embed_dim=32),
             TextConfig(vocab_size=100, context_length=16, width=48, layers=2, heads=3, embed_dim=32,
                        eot_token_id=99)),
    "wide-shallow": (VisionConfig(image_size=48, patch_size=16, width=96, layers=1, heads=2, mlp_width=128,
                                  embed_dim=24),
                     TextConfig(vocab_size=300, context_length=24, width=96, layers=1, heads=4, mlp_width=200,
                                embed_dim=24, eot_token_id=299)),
    "deep-narrow": (VisionConfig(image_size=28, patch_size=7, width=32, layers=4, heads=1, embed_dim=16,
                                 activation="gelu"),
                    TextConfig(vocab_size=50, context_length=12, width=32, layers=5, heads=2, embed_dim=16,
                               eot_token_id=49, activation="gelu")),
}


def hf_config_for(config: CLIPConfig) -> HFCLIPConfig:
    """The transformers config of the same shape, written independently of minimodal.convert."""
    v, t = config.vision, config.text
    return HFCLIPConfig(
        projection_dim=config.embed_dim,
        vision_config=dict(hidden_size=v.width, intermediate_size=v.mlp_width,
                           num_hidden_layers=v.layers, num_attention_heads=v.heads,
                           image_size=v.image_size, patch_size=v.patch_size,
                           hidden_act=v.activation, layer_norm_eps=v.norm_eps),
        text_config=dict(vocab_size=t.vocab_size, hidden_size=t.width,
                         intermediate_size=t.mlp_width, num_hidden_layers=t.layers,
                         num_attention_heads=t.heads, max_position_embeddings=t.context_length,
                         hidden_act=t.activation, layer_norm_eps=t.norm_eps,
                         eos_token_id=t.eot_token_id, bos_token_id=0, pad_token_id=0))


def twins(config: CLIPConfig, attn_implementation: str = "sdpa", seed: int = 0,
          device: torch.device | str = "cpu"):
    """(minimodal CLIP, transformers CLIPModel) with the same random weights, in eval mode, on ``device``."""
    torch.manual_seed(seed)
    reference = CLIPModel._from_config(hf_config_for(config), attn_implementation=attn_implementation)
    # Randomize the LayerNorms too: at their init (ones, zeros) a swapped weight and bias would pass.
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    mine = load_hf_state_dict(CLIP(config), reference.state_dict())
    return mine.eval().to(device), reference.eval().to(device)


def sample_inputs(config: CLIPConfig, batch: int = 3, seed: int = 1, device: torch.device | str = "cpu"):
    """Random pixels, and token ids of different lengths, each ending in end-of-text then padding,
    drawn on the CPU and moved to ``device``.

    Padding uses id 0, so the end-of-text token is found by its id, not by being last.
    """
    g = torch.Generator().manual_seed(seed)
    v, t = config.vision, config.text
    pixels = torch.randn(batch, 3, v.image_size, v.image_size, generator=g)
    ids = torch.randint(1, t.eot_token_id, (batch, t.context_length), generator=g)
    for row, length in enumerate(torch.linspace(2, t.context_length - 1, batch).long()):
        ids[row, length] = t.eot_token_id
        ids[row, length + 1:] = 0
    return pixels.to(device), ids.to(device)


def assert_tower_matches_transformers(shape: str, tower: str, attn: str,
                                      device: torch.device | str = "cpu") -> None:
    """One tower of a SMALL_SHAPES model against transformers' at every layer and at the
    projected embedding, with minimodal's attention fused and written out, both on ``device``."""
    config = CLIPConfig(*SMALL_SHAPES[shape])
    mine, reference = twins(config, attn, device=device)
    pixels, ids = sample_inputs(config, device=device)
    if tower == "vision":
        ours, theirs, projection, inputs = mine.visual, reference.vision_model, reference.visual_projection, pixels
    else:
        ours, theirs, projection, inputs = mine.text, reference.text_model, reference.text_projection, ids
    with torch.no_grad():
        out = theirs(inputs, output_hidden_states=True)
        expected = projection(out.pooler_output)
        for fused in (True, False):
            set_fused_attention(mine, fused)
            against = f"transformers {type(theirs).__name__} ({attn}, minimodal fused={fused})"
            assert_close_layers(ours.hidden_states(inputs), out.hidden_states,
                                what=f"{shape} {tower} hidden states", against=against)
            assert_close(ours(inputs), expected, what=f"{shape} {tower} embeddings", against=against,
                         atol=1e-5, rtol=1e-5)


def mismatch_message(load, model, state: dict) -> str:
    """What a strict loader says when ``state`` does not fit ``model`` (it must refuse)."""
    with pytest.raises(CheckpointMismatch) as error:
        load(model, state)
    return str(error.value)
