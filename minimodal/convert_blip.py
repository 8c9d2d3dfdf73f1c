"""BLIP's retrieval model in and out of transformers' ``BlipForImageTextRetrieval`` names, strictly.

Two differences beyond renaming. The image tower stores each block's query, key and
value stacked in one ``qkv`` matrix, as OpenAI's CLIP does (``fuse_qkv``); and its class
and position embeddings carry a leading batch axis of one. The text layers are named as
in BERT (``TEXT_LAYER``); BLIP-2's Q-Former names (``minimodal.convert_flamingo``) are
derived from them.
"""

from __future__ import annotations

import re

import torch

from minimodal.blip import Blip, BlipConfig
from minimodal.convert import check_state_dict
from minimodal.convert_openai import fuse_qkv, split_qkv

TOP = {
    "vision.patch_embed": "vision_model.embeddings.patch_embedding",
    "vision.class_embedding": "vision_model.embeddings.class_embedding",
    "vision.positional_embedding": "vision_model.embeddings.position_embedding",
    "vision.ln_post": "vision_model.post_layernorm",
    "text.token_embedding": "text_encoder.embeddings.word_embeddings",
    "text.position_embedding": "text_encoder.embeddings.position_embeddings.weight",
    "text.ln_embed": "text_encoder.embeddings.LayerNorm",
    "vision_proj": "vision_proj", "text_proj": "text_proj", "itm_head": "itm_head"}
VISION_BLOCK = {"ln_1": "layer_norm1", "attn.in_proj": "self_attn.qkv", "attn.out_proj": "self_attn.projection",
                "ln_2": "layer_norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
TEXT_LAYER = {  # CrossAttentionLayer -> BERT's layer with cross-attention
    "self_attn.q_proj": "attention.self.query", "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value", "self_attn.out_proj": "attention.output.dense",
    "self_norm": "attention.output.LayerNorm", "cross_attn.q_proj": "crossattention.self.query",
    "cross_attn.k_proj": "crossattention.self.key", "cross_attn.v_proj": "crossattention.self.value",
    "cross_attn.out_proj": "crossattention.output.dense", "cross_norm": "crossattention.output.LayerNorm",
    "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense", "mlp_norm": "output.LayerNorm"}
VISION_KEY = re.compile(r"vision\.transformer\.blocks\.(\d+)\.(.+)[._](weight|bias)")  # attn.in_proj_weight too
TEXT_KEY = re.compile(r"text\.layers\.(\d+)\.(.+)\.(weight|bias)")
WITH_BATCH_AXIS = ("vision.class_embedding", "vision.positional_embedding")  # (D,), (1 + N, D) -> (1, ., D)


def blip_name(key: str) -> str:
    """minimodal's name of a Blip tensor (q/k/v of the image tower fused) -> transformers' name."""
    if match := VISION_KEY.fullmatch(key):
        layer, module, kind = match.groups()
        return f"vision_model.encoder.layers.{layer}.{VISION_BLOCK[module]}.{kind}"
    if match := TEXT_KEY.fullmatch(key):
        layer, module, kind = match.groups()
        return f"text_encoder.encoder.layer.{layer}.{TEXT_LAYER[module]}.{kind}"
    if key in TOP:
        return TOP[key]
    module, kind = key.rsplit(".", 1)
    return f"{TOP[module]}.{kind}"


def fused_state_dict(model: Blip) -> dict[str, torch.Tensor]:
    """``model``'s tensors with each image block's q, k, v stacked (the text layers keep theirs apart)."""
    state = model.state_dict()
    vision = fuse_qkv({k: v for k, v in state.items() if k.startswith("vision.")})
    return {**{k: v for k, v in state.items() if not k.startswith("vision.")}, **vision}


def _their_shape(key: str, tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(1, -1, tensor.shape[-1]) if key in WITH_BATCH_AXIS else tensor


def to_blip_state_dict(model: Blip) -> dict[str, torch.Tensor]:
    """A state dict that BlipForImageTextRetrieval loads with strict=True."""
    return {blip_name(k): _their_shape(k, v).contiguous() for k, v in fused_state_dict(model).items()}


def load_blip_state_dict(model: Blip, state: dict[str, torch.Tensor]) -> Blip:
    """Copy a BlipForImageTextRetrieval state dict into ``model``, strictly: every tensor named and shaped.

    The index buffers transformers may have saved (``position_ids``) are dropped, never loaded.
    """
    state = {k: v for k, v in state.items() if not k.endswith("embeddings.position_ids")}
    check_state_dict(state, to_blip_state_dict(model), "the BlipForImageTextRetrieval checkpoint")
    fused = {k: state[blip_name(k)].reshape(v.shape) for k, v in fused_state_dict(model).items()}
    model.load_state_dict(split_qkv(fused))
    return model


def blip_config(config: BlipConfig) -> dict:
    """Keyword arguments of transformers' BlipConfig for a model of ``config``'s shape."""
    vision, text = config.vision, config.text
    return dict(
        vision_config=dict(hidden_size=vision.width, intermediate_size=vision.mlp_width,
                           num_hidden_layers=vision.layers, num_attention_heads=vision.heads,
                           image_size=vision.image_size, patch_size=vision.patch_size,
                           hidden_act=vision.activation, layer_norm_eps=vision.norm_eps),
        text_config=dict(vocab_size=text.vocab_size, hidden_size=text.width, intermediate_size=text.mlp_width,
                         num_hidden_layers=text.layers, num_attention_heads=text.heads,
                         max_position_embeddings=text.max_length, hidden_act="gelu",
                         layer_norm_eps=text.norm_eps, pad_token_id=0, bos_token_id=None,
                         sep_token_id=None, eos_token_id=None),
        image_text_hidden_size=config.embed_dim)
