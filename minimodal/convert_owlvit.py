"""transformers' OwlViTForObjectDetection, both ways.

Its towers are CLIP's under an ``owlvit.`` prefix, with one name spelt differently
(CLIP's ``pre_layrnorm`` is OWL-ViT's ``pre_layernorm``); its heads already have the
names ``minimodal.owlvit`` uses. So the map is CLIP's map plus a prefix.
"""

from __future__ import annotations

from pathlib import Path

import torch

from minimodal.clip import CLIPConfig
from minimodal.convert import (check_state_dict, clip_config_from_hf, hf_config, hf_name, read_config, read_weights,
                              write_checkpoint)
from minimodal.owlvit import OWLViT


def owlvit_name(key: str) -> str:
    """minimodal's name of a detector tensor -> OwlViTForObjectDetection's."""
    if key.startswith("clip."):
        return "owlvit." + hf_name(key.removeprefix("clip.")).replace("pre_layrnorm", "pre_layernorm")
    return key


def to_owlvit_state_dict(model: OWLViT) -> dict[str, torch.Tensor]:
    """A state dict that OwlViTForObjectDetection loads with strict=True."""
    return {owlvit_name(k): v for k, v in model.state_dict().items()}


def load_owlvit_state_dict(model: OWLViT, state: dict[str, torch.Tensor]) -> OWLViT:
    """Copy an OwlViTForObjectDetection state dict into ``model``, strictly (the index
    buffers transformers keeps, ``position_ids``, are dropped)."""
    state = {k: v for k, v in state.items() if not k.endswith("embeddings.position_ids")}
    check_state_dict(state, to_owlvit_state_dict(model), "the OWL-ViT checkpoint")
    model.load_state_dict({k: state[owlvit_name(k)] for k in model.state_dict()})
    return model


def owlvit_config(config: CLIPConfig) -> dict:
    """An OwlViTConfig (as a dict) for a detector on ``config``'s towers.

    transformers sizes the class head's output by the text tower's width but compares it
    with the projected text embeddings, so the two must be equal.
    """
    if config.embed_dim != config.text.width:
        raise ValueError(f"OwlViTForObjectDetection needs embed_dim == the text width, got "
                         f"{config.embed_dim} and {config.text.width}")
    clip = hf_config(config)
    return {"model_type": "owlvit", "architectures": ["OwlViTForObjectDetection"],
            "projection_dim": config.embed_dim,
            "text_config": {**clip["text_config"], "pad_token_id": 0},
            "vision_config": clip["vision_config"]}


def save_owlvit_checkpoint(model: OWLViT, folder: str | Path) -> Path:
    """Write the folder that OwlViTForObjectDetection.from_pretrained reads."""
    return write_checkpoint(folder, owlvit_config(model.config), to_owlvit_state_dict(model))


def load_owlvit_checkpoint(folder: str | Path) -> OWLViT:
    """A detector from an OwlViTForObjectDetection checkpoint folder; its towers' config is CLIP's."""
    folder = Path(folder)
    model = OWLViT(clip_config_from_hf(read_config(folder)))
    return load_owlvit_state_dict(model, read_weights(folder))
