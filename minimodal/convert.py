"""Weights in and out: strict key maps between minimodal and other people's checkpoints.

Three CLIP formats hold the same numbers under different names:

- transformers' CLIPModel: ``vision_model.encoder.layers.3.self_attn.q_proj.weight``...
  the names minimodal's modules mostly follow, so its map is a rename.
- OpenAI's CLIP (and open_clip, which kept its names): ``visual.transformer.resblocks.3.
  attn.in_proj_weight`` holds query, key and value stacked in one matrix, and the two
  projections are stored as (width, embed_dim) matrices used as ``x @ proj``
  (``minimodal.convert_openai``).
- BERT (for all-MiniLM-L6-v2 in lesson 02): ``encoder.layer.3.attention.self.query.weight``
  (``minimodal.convert_bert``).

This module holds the table of names in every format and the transformers format;
every loader is strict: a tensor that is missing, unexpected or of the wrong shape
raises ``CheckpointMismatch`` naming it in the checkpoint's own naming. Files are read
with safetensors or ``torch.load(weights_only=True)``, never as a raw pickle.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from minimodal.clip import CLIP, CLIPConfig
from minimodal.text import TextConfig
from minimodal.vit import VisionConfig


class CheckpointMismatch(ValueError):
    """A checkpoint's tensors do not fit the model; the message names every bad one."""


def check_state_dict(state: dict, expected: dict, source: str) -> None:
    """Raise CheckpointMismatch unless ``state`` has exactly the names and shapes of ``expected``."""
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    misshapen = [f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
                 for k in sorted(expected.keys() & state.keys())
                 if tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = [f"{label} ({len(names)}): {', '.join(names[:8])}" + (", ..." if len(names) > 8 else "")
                for label, names in (("missing", missing), ("unexpected", unexpected),
                                     ("wrong shape", misshapen)) if names]
    if problems:
        raise CheckpointMismatch(f"{source} does not fit the model: " + "; ".join(problems))


def weight_and_bias(*rows: tuple) -> list[tuple]:
    """Rows of module names -> rows of tensor names, one for the .weight and one for the .bias."""
    return [tuple(f"{name}.{kind}" for name in row) for row in rows for kind in ("weight", "bias")]


def column(rows: list[tuple], index: int) -> dict[str, str]:
    """{minimodal's name: the name in column ``index``} for the rows that have one."""
    return {row[0]: row[index] for row in rows if row[index] is not None}


# Each row names one tensor in every format: minimodal, transformers' CLIPModel, OpenAI's CLIP
# (which open_clip kept). In a block, OpenAI stores query, key and value stacked in one
# in_proj (see fuse_qkv); BERT's naming of the same block is the last column.
CLIP_TENSORS = [
    ("logit_scale", "logit_scale", "logit_scale"),
    ("visual.patch_embed.weight", "vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"),
    ("visual.class_embedding", "vision_model.embeddings.class_embedding", "visual.class_embedding"),
    ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight",
     "visual.positional_embedding"),
    ("visual.proj.weight", "visual_projection.weight", "visual.proj"),
    ("text.token_embedding.weight", "text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
    ("text.positional_embedding", "text_model.embeddings.position_embedding.weight", "positional_embedding"),
    ("text.proj.weight", "text_projection.weight", "text_projection"),
    *weight_and_bias(("visual.ln_pre", "vision_model.pre_layrnorm", "visual.ln_pre"),
                      ("visual.ln_post", "vision_model.post_layernorm", "visual.ln_post"),
                      ("text.ln_final", "text_model.final_layer_norm", "ln_final")),
]
BLOCK_TENSORS = [
    ("attn.in_proj_weight", None, "attn.in_proj_weight", None),
    ("attn.in_proj_bias", None, "attn.in_proj_bias", None),
    *weight_and_bias(
        ("ln_1", "layer_norm1", "ln_1", "attention.output.LayerNorm"),
        ("attn.q_proj", "self_attn.q_proj", None, "attention.self.query"),
        ("attn.k_proj", "self_attn.k_proj", None, "attention.self.key"),
        ("attn.v_proj", "self_attn.v_proj", None, "attention.self.value"),
        ("attn.out_proj", "self_attn.out_proj", "attn.out_proj", "attention.output.dense"),
        ("ln_2", "layer_norm2", "ln_2", "output.LayerNorm"),
        ("mlp.fc1", "mlp.fc1", "mlp.c_fc", "intermediate.dense"),
        ("mlp.fc2", "mlp.fc2", "mlp.c_proj", "output.dense")),
]
BLOCK_KEY = re.compile(r"(?:(\w+)\.)?transformer\.blocks\.(\d+)\.(.+)")


# ---------------------------------------------------------------- transformers CLIPModel

HF_NAMES, HF_BLOCK = column(CLIP_TENSORS, 1), column(BLOCK_TENSORS, 1)
HF_TOWER = {"visual": "vision_model", "text": "text_model"}


def hf_name(key: str) -> str:
    """minimodal's name of a CLIP tensor -> transformers' CLIPModel name."""
    if match := BLOCK_KEY.fullmatch(key):
        tower, layer, rest = match.groups()
        return f"{HF_TOWER[tower]}.encoder.layers.{layer}.{HF_BLOCK[rest]}"
    return HF_NAMES[key]


def to_hf_state_dict(model: CLIP) -> dict[str, torch.Tensor]:
    """A state dict that transformers' CLIPModel loads with strict=True."""
    return {hf_name(k): v for k, v in model.state_dict().items()}


def load_hf_state_dict(model: CLIP, state: dict[str, torch.Tensor]) -> CLIP:
    """Copy a transformers CLIPModel state dict into ``model``, strictly.

    transformers keeps ``position_ids`` as a non-persistent buffer; older checkpoints saved
    it anyway, so those two index tensors (0, 1, 2, ...) are dropped, never loaded.
    """
    state = {k: v for k, v in state.items() if not k.endswith("embeddings.position_ids")}
    check_state_dict(state, to_hf_state_dict(model), "the transformers CLIP checkpoint")
    model.load_state_dict({k: state[hf_name(k)] for k in model.state_dict()})
    return model


# transformers' CLIPTextConfig / CLIPVisionConfig defaults, for fields a config.json leaves out.
HF_TEXT_DEFAULTS = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048,
                        num_hidden_layers=12, num_attention_heads=8, max_position_embeddings=77,
                        hidden_act="quick_gelu", layer_norm_eps=1e-5, eos_token_id=49407)
HF_VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                          num_attention_heads=12, image_size=224, patch_size=32,
                          hidden_act="quick_gelu", layer_norm_eps=1e-5, num_channels=3)


def vision_config_from_hf(vision: dict, embed_dim: int | None) -> VisionConfig:
    """minimodal's VisionConfig from a transformers CLIPVisionConfig (as a dict)."""
    vision = {**HF_VISION_DEFAULTS, **vision}
    if vision["num_channels"] != 3:
        raise ValueError(f"only RGB image towers are supported, config has {vision['num_channels']} channels")
    return VisionConfig(image_size=vision["image_size"], patch_size=vision["patch_size"],
                        width=vision["hidden_size"], layers=vision["num_hidden_layers"],
                        heads=vision["num_attention_heads"], mlp_width=vision["intermediate_size"],
                        embed_dim=embed_dim, activation=vision["hidden_act"], norm_eps=vision["layer_norm_eps"])


def clip_config_from_hf(hf: dict) -> CLIPConfig:
    """minimodal's CLIPConfig from a transformers CLIPModel config.json (as a dict)."""
    text = {**HF_TEXT_DEFAULTS, **(hf.get("text_config") or {})}
    embed_dim = hf.get("projection_dim", 512)
    # Configs written before transformers#24773 say eos_token_id 2 and pool at the largest id,
    # which in CLIP's vocabulary is <|endoftext|>, the last one.
    eot = text["vocab_size"] - 1 if text["eos_token_id"] == 2 else text["eos_token_id"]
    return CLIPConfig(
        vision=vision_config_from_hf(hf.get("vision_config") or {}, embed_dim),
        text=TextConfig(vocab_size=text["vocab_size"], context_length=text["max_position_embeddings"],
                        width=text["hidden_size"], layers=text["num_hidden_layers"],
                        heads=text["num_attention_heads"], mlp_width=text["intermediate_size"],
                        embed_dim=embed_dim, eot_token_id=eot, activation=text["hidden_act"],
                        norm_eps=text["layer_norm_eps"]))


def hf_vision_config(v: VisionConfig) -> dict:
    """A transformers CLIPVisionConfig (as a dict) for ``v``."""
    return dict(hidden_size=v.width, intermediate_size=v.mlp_width, num_hidden_layers=v.layers,
                num_attention_heads=v.heads, image_size=v.image_size, patch_size=v.patch_size,
                num_channels=3, hidden_act=v.activation, layer_norm_eps=v.norm_eps)


def hf_config(config: CLIPConfig) -> dict:
    """A transformers CLIPModel config.json (as a dict) for ``config``."""
    t = config.text
    return {
        "model_type": "clip", "architectures": ["CLIPModel"], "projection_dim": config.embed_dim,
        "vision_config": {**hf_vision_config(config.vision), "projection_dim": config.embed_dim},
        "text_config": dict(vocab_size=t.vocab_size, hidden_size=t.width,
                            intermediate_size=t.mlp_width, num_hidden_layers=t.layers,
                            num_attention_heads=t.heads, max_position_embeddings=t.context_length,
                            hidden_act=t.activation, layer_norm_eps=t.norm_eps,
                            eos_token_id=t.eot_token_id, projection_dim=config.embed_dim),
    }


def write_checkpoint(folder: str | os.PathLike, config: dict, state: dict[str, torch.Tensor]) -> Path:
    """config.json and model.safetensors, the two files of a transformers checkpoint folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def publish(folder: str | os.PathLike, write: Callable[[Path], None], recipe: dict | None = None) -> Path:
    """Fill a checkpoint folder with ``write(staging)`` beside it, then move it in place.

    A reader never sees a half-written checkpoint, and an interrupted export leaves the
    old one untouched. ``recipe``, when given, is saved as recipe.json: what built it.
    """
    folder = Path(folder)
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write(staging)
    if recipe is not None:
        (staging / "recipe.json").write_text(json.dumps(recipe, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def is_built_by(folder: str | os.PathLike, recipe: dict, config: dict | None = None) -> bool:
    """Whether ``folder`` holds a checkpoint written by ``recipe`` (and with this config.json, if given)."""
    folder = Path(folder)
    try:
        built = json.loads((folder / "recipe.json").read_text())
        stored = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        return False
    return built == recipe and (config is None or stored == config)


def build_if_needed(folder: str | os.PathLike, default: Path, recipe: dict, build: Callable[[Path], None], *,
                    command: str, train_if_missing: bool = True, config: dict | None = None) -> Path:
    """Make sure ``folder`` holds a checkpoint, calling ``build(folder)`` (train, then export) when not.

    The course's own folder (``default``) is rebuilt, too, when another recipe built it (an
    older version of the course): a stale reference checkpoint would make lessons disagree.
    """
    folder = Path(folder)
    missing = not (folder / "config.json").is_file()
    if missing or (folder == default and not is_built_by(folder, recipe, config)):
        if not train_if_missing:
            raise FileNotFoundError(f"no checkpoint of the current recipe in {folder}; build it with "
                                    f"`{command} --out {folder}`")
        build(folder)
    return folder


def save_hf_checkpoint(model: CLIP, folder: str | os.PathLike) -> Path:
    """Write the folder that transformers' CLIPModel.from_pretrained reads."""
    return write_checkpoint(folder, hf_config(model.config), to_hf_state_dict(model))


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """model.safetensors from a checkpoint folder, else pytorch_model.bin read weights-only."""
    if (folder / "model.safetensors").is_file():
        return load_file(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder} holds neither model.safetensors nor pytorch_model.bin")


def read_config(folder: Path) -> dict:
    """A checkpoint folder's config.json as a dict, with errors that name the file."""
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json: not a transformers checkpoint folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); a checkpoint's config.json must be the "
                         "JSON object transformers writes with save_pretrained") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds a JSON {type(config).__name__}, not the object of settings "
                         "a checkpoint's config.json must be")
    return config


def load_hf_checkpoint(folder: str | os.PathLike) -> CLIP:
    """A CLIP from a transformers checkpoint folder (config.json and the weights)."""
    folder = Path(folder)
    config = clip_config_from_hf(read_config(folder))
    return load_hf_state_dict(CLIP(config), read_weights(folder))
