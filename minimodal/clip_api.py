"""OpenAI's ``clip`` package, on minimodal: code written for it runs with only the import changed.

    model, preprocess = minimodal.load("ViT-B/32", device=device)
    image = preprocess(Image.open("dog.jpg")).unsqueeze(0).to(device)
    text = minimodal.tokenize(["a diagram", "a dog", "a cat"]).to(device)
    logits_per_image, logits_per_text = model(image, text)

A name is looked up on disk, never downloaded unless ``download=True``:

- ``"shapes"``: the course's own CLIP (lesson 06), trained and exported on first use;
- an OpenAI name (``available_models()``): OpenAI's download folder, then the same
  weights in the Hugging Face cache;
- a Hugging Face id such as ``"openai/clip-vit-base-patch32"``: the Hugging Face cache;
- a checkpoint folder (transformers' format) or file (OpenAI's or open_clip's).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable, Sequence

import torch

from minimodal import hub
from minimodal.clip import CLIP
from minimodal.convert import load_hf_checkpoint
from minimodal.convert_openai import load_openai_checkpoint
from minimodal.data.transforms import clip_preprocess
from minimodal.device import pick_device
from minimodal.pretrained import load_shapes_clip
from minimodal.tokenizer import CONTEXT_LENGTH, CLIPTokenizer

SHAPES = "shapes"


def available_models() -> list[str]:
    """The names ``load`` knows without a path or a Hugging Face id."""
    return [SHAPES, *hub.OPENAI_FILES]


def load_model(name: str | os.PathLike, download: bool = False) -> CLIP:
    """The CLIP a name stands for, on the CPU; see the module's docstring for the names."""
    if str(name) == SHAPES:
        return load_shapes_clip()
    path = Path(name).expanduser()
    if path.is_dir():
        return load_hf_checkpoint(path)
    if path.is_file():
        return load_openai_checkpoint(path)
    name = str(name)
    looked = ""
    if name in hub.OPENAI_FILES:
        if (file := hub.find_openai_file(name)) is not None:
            return load_openai_checkpoint(file)
        looked = f"{hub.openai_cache_dir() / hub.OPENAI_FILES[name]} does not exist. "
        model_id = hub.OPENAI_ON_HUB[name]
    elif name.count("/") == 1 and not name.startswith((".", "/", "~")):
        model_id = name
    else:
        raise FileNotFoundError(f"{name!r} is not a model name, a Hugging Face id (owner/name), nor a "
                                f"checkpoint folder or file on disk; names: {', '.join(available_models())}")
    try:
        return load_hf_checkpoint(hub.find_in_hf_cache(model_id))
    except FileNotFoundError as err:
        if not download:
            raise FileNotFoundError(f"{looked}{err} Or call load({name!r}, download=True) on a machine "
                                    "with internet.") from None
    return load_hf_checkpoint(hub.download(model_id))


def load(name: str | os.PathLike, device: torch.device | str | None = None,
         download: bool = False) -> tuple[CLIP, Callable]:
    """A CLIP in eval mode on ``device`` (default: CUDA when present) and its preprocess.

    ``preprocess(image)`` turns a PIL image, a path or an (H, W, 3) uint8 array into the
    (3, S, S) tensor the model reads: CLIP's resize, centre crop and normalization at the
    model's image size. The course's 64x64 shapes renders pass through unresized.
    """
    model = load_model(name, download)
    preprocess = functools.partial(clip_preprocess, size=model.config.vision.image_size)
    return model.to(device if device is not None else pick_device()).eval(), preprocess


@functools.cache
def _tokenizer() -> CLIPTokenizer:
    return CLIPTokenizer.from_openai()


def tokenize(texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH,
             truncate: bool = False) -> torch.Tensor:
    """(B, context_length) ids in CLIP's vocabulary, zero-padded, as OpenAI's clip.tokenize.

    A text longer than the context is an error unless ``truncate=True``, which keeps the
    end-of-text token last. A model with a shorter context (the shapes CLIP reads 24)
    accepts these ids as long as each text ends within its context.
    """
    return _tokenizer()(texts, truncate=truncate, context_length=context_length)
