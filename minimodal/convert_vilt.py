"""transformers' ViltForQuestionAnswering, both ways.

Its names nest the model under ``vilt.`` with the text embeddings of BERT and a block
laid out like ViT's (``layernorm_before``, ``attention.attention.query``...); the VQA
head is a ``classifier`` Sequential, named as ours. Two tensors differ only in shape:
transformers keeps the image class token as (1, 1, D) and its positions as (1, 1 + N, D),
minimodal as (D,) and (1 + N, D), so they are reshaped on the way.
"""

from __future__ import annotations

import torch

from minimodal.convert import BLOCK_KEY, check_state_dict, weight_and_bias
from minimodal.vilt import ViLT, ViltConfig

VILT_BLOCK = dict(weight_and_bias(
    ("ln_1", "layernorm_before"),
    ("attn.q_proj", "attention.attention.query"),
    ("attn.k_proj", "attention.attention.key"),
    ("attn.v_proj", "attention.attention.value"),
    ("attn.out_proj", "attention.output.dense"),
    ("ln_2", "layernorm_after"),
    ("mlp.fc1", "intermediate.dense"),
    ("mlp.fc2", "output.dense")))
VILT_NAMES = {
    "token_embedding.weight": "vilt.embeddings.text_embeddings.word_embeddings.weight",
    "position_embedding": "vilt.embeddings.text_embeddings.position_embeddings.weight",
    "segment_embedding": "vilt.embeddings.text_embeddings.token_type_embeddings.weight",
    "class_embedding": "vilt.embeddings.cls_token",
    "image_position_embedding": "vilt.embeddings.position_embeddings",
    "modality_embedding": "vilt.embeddings.token_type_embeddings.weight",
    **dict(weight_and_bias(("ln_embed", "vilt.embeddings.text_embeddings.LayerNorm"),
                           ("patch_embed", "vilt.embeddings.patch_embeddings.projection"),
                           ("ln_final", "vilt.layernorm"),
                           ("pooler", "vilt.pooler.dense"))),
}


def vilt_name(key: str) -> str:
    """minimodal's name of a ViLT tensor -> ViltForQuestionAnswering's."""
    if match := BLOCK_KEY.fullmatch(key):
        _, layer, rest = match.groups()
        return f"vilt.encoder.layer.{layer}.{VILT_BLOCK[rest]}"
    if key.startswith("classifier."):
        return key
    return VILT_NAMES[key]


def their_shape(key: str, tensor: torch.Tensor) -> torch.Tensor:
    """Our tensor as transformers stores it: the class token (1, 1, D), the positions (1, 1 + N, D)."""
    if key == "class_embedding":
        return tensor.reshape(1, 1, -1)
    return tensor.unsqueeze(0) if key == "image_position_embedding" else tensor


def to_vilt_state_dict(model: ViLT) -> dict[str, torch.Tensor]:
    """A state dict that ViltForQuestionAnswering loads with strict=True."""
    return {vilt_name(k): their_shape(k, v) for k, v in model.state_dict().items()}


def load_vilt_state_dict(model: ViLT, state: dict[str, torch.Tensor]) -> ViLT:
    """Copy a ViltForQuestionAnswering state dict into ``model``, strictly: a tensor that
    is missing, unexpected or misshapen raises CheckpointMismatch naming it."""
    check_state_dict(state, to_vilt_state_dict(model), "the ViLT checkpoint")
    ours = model.state_dict()
    model.load_state_dict({k: state[vilt_name(k)].reshape(v.shape) for k, v in ours.items()})
    return model


def vilt_hf_config(config: ViltConfig) -> dict:
    """The keyword arguments of a transformers ViltConfig with ``config``'s shape.

    ``max_image_length=-1`` keeps every patch (no random subset); transformers still
    draws their order at random, which changes nothing but the order of image tokens.
    """
    if config.activation != "gelu" or not config.pre_norm or config.norm != "layer":
        raise ValueError("transformers' ViLT is pre-LN with LayerNorm and GELU; got activation "
                         f"{config.activation!r}, pre_norm={config.pre_norm}, norm={config.norm!r}")
    return dict(vocab_size=config.vocab_size, type_vocab_size=config.type_vocab_size,
                max_position_embeddings=config.max_length, hidden_size=config.width,
                num_hidden_layers=config.layers, num_attention_heads=config.heads,
                intermediate_size=config.mlp_width, hidden_act="gelu", layer_norm_eps=config.norm_eps,
                image_size=config.image_size, patch_size=config.patch_size, qkv_bias=config.bias,
                max_image_length=-1, num_labels=config.answers)
