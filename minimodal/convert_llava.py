"""LLaVA in and out of transformers' LlavaForConditionalGeneration, strictly.

Its three parts are stored under three prefixes, each with the names its own model uses:
the vision tower as a CLIP vision model's (``model.vision_tower.``), the projector as
``model.multi_modal_projector.linear_1/2``, the language model as a Llama's
(``model.language_model.``, with ``lm_head`` at the top). So the map reuses the CLIP
and Llama maps and only moves the prefixes. transformers' LLaVA does not tie the output
matrix to the embedding; a tied course model is written with both, equal.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from minimodal.convert import (CheckpointMismatch, check_state_dict, hf_name, hf_vision_config, read_config,
                               read_weights, vision_config_from_hf, write_checkpoint)
from minimodal.convert_llama import llama_config, llama_name, lm_config_from_llama
from minimodal.llava import LLaVA, LlavaConfig

VISION, PROJECTOR, LANGUAGE = "vision_tower.", "projector.", "language_model."


def llava_name(key: str) -> str:
    """minimodal's name of a LLaVA tensor -> LlavaForConditionalGeneration's."""
    if key.startswith(VISION):
        clip_name = hf_name("visual." + key.removeprefix(VISION))        # vision_model.…
        return "model.vision_tower." + clip_name.removeprefix("vision_model.")
    if key.startswith(PROJECTOR):
        return "model.multi_modal_projector." + key.removeprefix(PROJECTOR)
    name = llama_name(key.removeprefix(LANGUAGE))                         # model.… or lm_head.weight
    return name if name == "lm_head.weight" else "model.language_model." + name.removeprefix("model.")


def to_llava_state_dict(model: LLaVA) -> dict[str, torch.Tensor]:
    """A state dict LlavaForConditionalGeneration loads with strict=True (a tied head written out)."""
    return {llava_name(k): v for k, v in model.state_dict().items()}


def load_llava_state_dict(model: LLaVA, state: dict[str, torch.Tensor]) -> LLaVA:
    """Copy a LlavaForConditionalGeneration state dict into ``model``, strictly; a tied model
    requires the checkpoint's lm_head to equal its embedding."""
    check_state_dict(state, to_llava_state_dict(model), "the LLaVA checkpoint")
    if model.language_model.config.tie_embeddings and not torch.equal(
            state["lm_head.weight"], state["model.language_model.embed_tokens.weight"]):
        raise CheckpointMismatch("the LLaVA checkpoint's lm_head.weight differs from its embed_tokens, but the "
                         "language model ties them: build it with tie_embeddings=False")
    model.load_state_dict({k: state[llava_name(k)] for k in model.state_dict()})
    return model


def llava_hf_config(config: LlavaConfig) -> dict:
    """A transformers LlavaConfig (as a dict): one token per patch, the second-to-last layer."""
    if config.tokens_per_side is not None:
        raise ValueError("transformers' LLaVA keeps one token per patch; a model with pooled image "
                         "tokens (tokens_per_side) has no equivalent there")
    text = {**llama_config(config.lm), "tie_word_embeddings": False}
    return {"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"],
            "vision_config": {"model_type": "clip_vision_model", **hf_vision_config(config.vision)},
            "text_config": text, "image_token_index": config.image_token_id,
            "projector_hidden_act": "gelu", "vision_feature_layer": config.feature_layer,
            "vision_feature_select_strategy": "default", "image_seq_length": config.image_tokens,
            "multimodal_projector_bias": True, "tie_word_embeddings": False}


def llava_config_from_hf(hf: dict, tie_embeddings: bool = True) -> LlavaConfig:
    """minimodal's LlavaConfig from a LlavaForConditionalGeneration config.json (as a dict).

    Only what this course builds is accepted: the default feature strategy (class token
    dropped), a GELU projector with biases, a CLIP vision tower and a Llama.
    """
    strategy, act = hf.get("vision_feature_select_strategy", "default"), hf.get("projector_hidden_act", "gelu")
    layer = hf.get("vision_feature_layer", -2)
    if strategy != "default" or act != "gelu" or not isinstance(layer, int) or \
            not hf.get("multimodal_projector_bias", True):
        raise ValueError(f"only LLaVA-1.5's layout is supported (one feature layer, the class token dropped, "
                         f"a GELU projector with biases); this config has strategy {strategy!r}, "
                         f"activation {act!r}, feature layer {layer!r}")
    lm = lm_config_from_llama({**hf["text_config"], "tie_word_embeddings": tie_embeddings})
    return LlavaConfig(vision=vision_config_from_hf(hf["vision_config"], None), lm=lm,
                       image_token_id=hf["image_token_index"], feature_layer=layer)


def save_llava_checkpoint(model: LLaVA, folder: str | os.PathLike) -> Path:
    """Write the folder LlavaForConditionalGeneration.from_pretrained reads."""
    state = {k: v.clone() for k, v in to_llava_state_dict(model).items()}  # a tied head: its own copy
    return write_checkpoint(folder, llava_hf_config(model.config), state)


def load_llava_checkpoint(folder: str | os.PathLike) -> LLaVA:
    """A LLaVA from a LlavaForConditionalGeneration checkpoint folder; the head is tied when the
    checkpoint's lm_head equals its embedding (as the course's models are written)."""
    folder = Path(folder)
    state = read_weights(folder)
    tied = torch.equal(state["lm_head.weight"], state["model.language_model.embed_tokens.weight"]) \
        if "lm_head.weight" in state and "model.language_model.embed_tokens.weight" in state else False
    model = LLaVA(llava_config_from_hf(read_config(folder), tie_embeddings=tied))
    return load_llava_state_dict(model, state)
