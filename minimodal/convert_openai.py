"""OpenAI's CLIP and open_clip checkpoints, mapped onto minimodal's CLIP, strictly.

OpenAI's names (which open_clip kept) differ from transformers' in two ways beyond
renaming: a block's query, key and value are stacked in one ``in_proj`` matrix, and the
two projections are stored as (width, embed_dim) matrices used as ``x @ proj``. The
rows of ``minimodal.convert.CLIP_TENSORS`` give each tensor's OpenAI name.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from minimodal.clip import CLIP, CLIPConfig
from minimodal.convert import BLOCK_KEY, BLOCK_TENSORS, CLIP_TENSORS, check_state_dict, column
from minimodal.text import TextConfig
from minimodal.vit import VisionConfig

OPENAI_NAMES, OPENAI_BLOCK = column(CLIP_TENSORS, 2), column(BLOCK_TENSORS, 2)
OPENAI_TOWER = {"visual": "visual.", "text": ""}
# Stored as (width, embed_dim) for x @ proj; minimodal's Linear layers hold the transpose.
TRANSPOSED = {"visual.proj.weight", "text.proj.weight"}


def fuse_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace each block's q/k/v projections by one stacked in_proj, as OpenAI stores them."""
    fused = {}
    for key, tensor in state.items():
        for kind in ("weight", "bias"):
            if key.endswith(f"attn.q_proj.{kind}"):
                prefix = key[:-len(f"q_proj.{kind}")]
                fused[f"{prefix}in_proj_{kind}"] = torch.cat(
                    [state[f"{prefix}{p}_proj.{kind}"] for p in "qkv"])
        if not re.search(r"attn\.[qkv]_proj\.", key):
            fused[key] = tensor
    return fused


def split_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of fuse_qkv."""
    split = {}
    for key, tensor in state.items():
        if match := re.fullmatch(r"(.*attn\.)in_proj_(weight|bias)", key):
            prefix, kind = match.groups()
            for p, part in zip("qkv", tensor.chunk(3)):
                split[f"{prefix}{p}_proj.{kind}"] = part
        else:
            split[key] = tensor
    return split


def openai_name(key: str) -> str:
    """minimodal's name (with q/k/v fused) -> OpenAI CLIP's name of the same tensor."""
    if match := BLOCK_KEY.fullmatch(key):
        tower, layer, rest = match.groups()
        return f"{OPENAI_TOWER[tower]}transformer.resblocks.{layer}.{OPENAI_BLOCK[rest]}"
    return OPENAI_NAMES[key]


def _orient(key: str, tensor: torch.Tensor) -> torch.Tensor:
    return tensor.T if key in TRANSPOSED else tensor


def to_openai_state_dict(model: CLIP) -> dict[str, torch.Tensor]:
    """A state dict in OpenAI CLIP's naming (what open_clip's CLIP loads too)."""
    return {openai_name(k): _orient(k, v).contiguous() for k, v in fuse_qkv(model.state_dict()).items()}


# Not weights: OpenAI's released TorchScript models carry three integers among their tensors,
# and an open_clip model saved by tracing carries its text tower's causal mask.
OPENAI_NOT_WEIGHTS = {"input_resolution", "context_length", "vocab_size", "attn_mask"}


def unwrap_openai(state: dict) -> dict[str, torch.Tensor]:
    """The weights alone, from any of the shapes an OpenAI or open_clip state dict comes in.

    open_clip training checkpoints nest the weights under "state_dict" and, when trained
    with DistributedDataParallel, prefix every name with "module."; the tensors above are
    dropped, the shapes of the weights already say what they say.
    """
    state = state.get("state_dict", state)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if k not in OPENAI_NOT_WEIGHTS}


def load_openai_state_dict(model: CLIP, state: dict) -> CLIP:
    """Copy an OpenAI CLIP or open_clip state dict into ``model``, strictly."""
    state = unwrap_openai(state)
    check_state_dict(state, to_openai_state_dict(model), "the OpenAI/open_clip CLIP state dict")
    fused = {k: _orient(k, state[openai_name(k)]) for k in fuse_qkv(model.state_dict())}
    model.load_state_dict(split_qkv(fused))
    return model


def clip_config_from_openai(state: dict, head_width: int = 64) -> CLIPConfig:
    """Read the architecture off an OpenAI-format state dict's shapes.

    Head counts are not stored anywhere; OpenAI and open_clip use heads of width 64.
    """
    state = unwrap_openai(state)
    width, _, patch, _ = state["visual.conv1.weight"].shape
    grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = state["ln_final.weight"].shape[0]
    vocab_size = state["token_embedding.weight"].shape[0]

    def layers(prefix: str) -> int:
        return len({k.split(".")[prefix.count(".")] for k in state if k.startswith(prefix)})

    embed_dim = state["text_projection"].shape[1]
    return CLIPConfig(
        vision=VisionConfig(image_size=grid * patch, patch_size=patch, width=width,
                            layers=layers("visual.transformer.resblocks."), heads=width // head_width,
                            mlp_width=state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
                            embed_dim=embed_dim),
        text=TextConfig(vocab_size=vocab_size, context_length=state["positional_embedding"].shape[0],
                        width=text_width, layers=layers("transformer.resblocks."),
                        heads=text_width // head_width,
                        mlp_width=state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
                        embed_dim=embed_dim, eot_token_id=vocab_size - 1))


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with a constants.pkl; torch.save writes none."""
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def read_openai_file(path: Path) -> dict:
    """An OpenAI or open_clip checkpoint file as a dict of tensors, without unpickling Python.

    .safetensors files are read as such, open_clip's .pt files with torch.load(weights_only=True).
    OpenAI's own .pt files are TorchScript archives, which weights_only refuses: torch.jit.load
    reads them with TorchScript's own reader, which builds tensors and TorchScript values only,
    and we keep the state dict, never calling the archive's code.
    """
    if path.suffix == ".safetensors":
        return load_file(path)
    if zipfile.is_zipfile(path) and is_torchscript(path):
        with warnings.catch_warnings():  # TorchScript is deprecated; these files still exist
            warnings.simplefilter("ignore", DeprecationWarning)
            return dict(torch.jit.load(path, map_location="cpu").state_dict())
    return torch.load(path, map_location="cpu", weights_only=True)


def load_openai_checkpoint(path: str | os.PathLike, head_width: int = 64) -> CLIP:
    """A CLIP from an OpenAI or open_clip checkpoint file (.pt, .bin or .safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    state = read_openai_file(path)
    return load_openai_state_dict(CLIP(clip_config_from_openai(state, head_width)), state)
