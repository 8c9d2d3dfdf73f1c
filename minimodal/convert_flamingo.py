"""Flamingo's parts in and out of transformers' names, strictly, and the course Flamingo's checkpoint.

transformers has no Flamingo; its IDEFICS is an open reproduction, and its perceiver
resampler and gated cross-attention layer are the pieces ``minimodal.flamingo`` is
compared with. BLIP-2's Q-Former is compared with ``Blip2QFormerModel``. Each map is a
rename: the tensors are stored alike.

The course Flamingo's checkpoint holds only what was trained (the connector and the
gated blocks); the frozen vision tower and language model are the course's own
checkpoints, rebuilt or loaded by their recipes, which recipe.json records.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn as nn

from minimodal.convert import check_state_dict, read_weights, write_checkpoint
from minimodal.convert_blip import TEXT_LAYER

RESAMPLER_LAYER = {
    "attention.context_norm": "0.context_layer_norm", "attention.latents_norm": "0.latents_layer_norm",
    "attention.attn.q_proj": "0.q_proj", "attention.attn.k_proj": "0.k_proj", "attention.attn.v_proj": "0.v_proj",
    "attention.attn.out_proj": "0.output_proj", "norm": "1.ln", "mlp.fc1": "1.fc", "mlp.fc2": "1.c_proj"}
GATED_BLOCK = {
    "attn_norm": "input_layernorm", "cross_attn.q_proj": "cross_attn.q_proj",
    "cross_attn.k_proj": "cross_attn.k_proj", "cross_attn.v_proj": "cross_attn.v_proj",
    "cross_attn.out_proj": "cross_attn.o_proj", "attn_gate": "alpha_cross_attn",
    "mlp_norm": "post_attention_layernorm",
    "mlp.gate_proj": "mlp.gate_proj", "mlp.up_proj": "mlp.up_proj", "mlp.down_proj": "mlp.down_proj",
    "mlp_gate": "alpha_dense"}
# The Q-Former layer is BLIP's text layer: BLIP-2 spells BERT's attention.self as attention.attention,
# and its queries' feed-forward (intermediate, output) carries a _query suffix.
QFORMER_LAYER = {ours: re.sub(r"^(intermediate|output)\.", r"\1_query.",
                              theirs.replace("attention.self", "attention.attention"))
                 for ours, theirs in TEXT_LAYER.items()}
LAYER = re.compile(r"layers\.(\d+)\.(.+)\.(weight|bias)")


def _module_renamed(key: str, names: dict[str, str]) -> str:
    """'a.b.weight' -> names['a.b'] + '.weight'; a parameter held directly ('latents') by its own name."""
    if key in names:
        return names[key]
    module, kind = key.rsplit(".", 1)
    return f"{names[module]}.{kind}"


def _renamed(key: str, layer_map: dict[str, str], layer_prefix: str, top: dict[str, str]) -> str:
    if match := LAYER.fullmatch(key):
        layer, module, kind = match.groups()
        return f"{layer_prefix}.{layer}.{layer_map[module]}.{kind}"
    return _module_renamed(key, top)


def idefics_resampler_name(key: str) -> str:
    """PerceiverResampler's tensor name -> IdeficsPerceiverResampler's."""
    return _renamed(key, RESAMPLER_LAYER, "blocks", {"latents": "latents", "norm": "layer_norm"})


def idefics_gated_name(key: str) -> str:
    """GatedCrossAttentionBlock's tensor name -> IdeficsGatedCrossAttentionLayer's."""
    return _module_renamed(key, GATED_BLOCK)


def blip2_qformer_name(key: str) -> str:
    """QFormer's tensor name -> Blip2QFormerModel's (the queries live outside it, in Blip2Model)."""
    return _renamed(key, QFORMER_LAYER, "encoder.layer", {"queries": "query_tokens", "norm": "layernorm"})


def renamed_state_dict(module: nn.Module, name, skip: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """``module``'s tensors under the names ``name(key)`` gives, leaving out the keys in ``skip``."""
    return {name(k): v for k, v in module.state_dict().items() if k not in skip}


def load_renamed(module: nn.Module, state: dict[str, torch.Tensor], name, source: str,
                 skip: tuple[str, ...] = ()) -> nn.Module:
    """Copy a state dict in the other naming into ``module``, strictly: every tensor named and shaped."""
    expected = renamed_state_dict(module, name, skip)
    check_state_dict(state, expected, source)
    module.load_state_dict({k: state[name(k)] for k in module.state_dict() if k not in skip}, strict=not skip)
    return module


def trained_parts(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors that learned: everything outside the frozen vision tower and language model."""
    frozen = ("vision_tower.", "language_model.")
    return {k: v for k, v in model.state_dict().items() if not k.startswith(frozen)}


def save_trained_parts(model: nn.Module, folder: str | Path, config: dict) -> Path:
    return write_checkpoint(folder, config, trained_parts(model))


def load_trained_parts(model: nn.Module, folder: str | Path) -> nn.Module:
    """Fill the connector and gated blocks from ``folder``, strictly; the frozen parts are already in place."""
    state = read_weights(Path(folder))
    check_state_dict(state, trained_parts(model), f"the checkpoint in {folder}")
    model.load_state_dict({**model.state_dict(), **state})
    return model
