"""CLIP's image preprocessing, step by step.

CLIP was trained on 224x224 crops normalized with its own mean and std; feeding it
anything else silently costs accuracy. The recipe: convert to RGB (transparency
composited onto white), resize so the short side is 224 with bicubic filtering, crop
the centre square, scale to [0, 1], normalize per channel.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ACCEPTED = ("a PIL.Image.Image, a path to an image file (PNG, JPEG, ...) or a NumPy uint8 array "
            "of shape (H, W), (H, W, 3) or (H, W, 4)")


def image_from_array(pixels: np.ndarray) -> Image.Image:
    """A PIL image from an (H, W), (H, W, 3) or (H, W, 4) uint8 array, as transformers' processor takes."""
    if pixels.dtype != np.uint8:
        raise TypeError(f"expected {ACCEPTED}; got an array of {pixels.dtype} (convert [0, 1] floats "
                        "with (x * 255).round().astype(np.uint8))")
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4)):
        raise ValueError(f"expected {ACCEPTED}; got an array of shape {pixels.shape} (channels last)")
    return Image.fromarray(pixels)


def open_image(source) -> Image.Image:
    """A PIL image from a PIL image, an array or a path, with an error that names a bad file."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return image_from_array(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"expected {ACCEPTED}, got {type(source).__name__}")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so a truncated file fails here and not later
            return image.copy()
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image PIL can read (not an image, or a corrupt one)") from None
    except (OSError, SyntaxError) as err:
        raise ValueError(f"{path} is a corrupt or truncated image: {err}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB the way CLIP's processor does it: anything transparent is composited onto white."""
    if image.mode == "RGB":
        return image
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def resize_short_side(image: Image.Image, size: int) -> Image.Image:
    """Bicubic resize so the short side is ``size``; the long side keeps the aspect (rounded down)."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_short, new_long = size, int(size * long / short)
    new_size = (new_short, new_long) if width <= height else (new_long, new_short)
    return image.resize(new_size, resample=Image.Resampling.BICUBIC)


def center_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    """The central size x size square of an (H, W, C) array whose short side is ``size``."""
    height, width = pixels.shape[:2]
    top, left = (height - size) // 2, (width - size) // 2
    return pixels[top:top + size, left:left + size]


def clip_preprocess(image, size: int = 224) -> torch.Tensor:
    """(3, size, size) float32 tensor ready for a CLIP image encoder."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive number of pixels (224 for CLIP ViT-B/32), got {size!r}")
    image = open_image(image)
    if image.width < 1 or image.height < 1:
        raise ValueError(f"image has no pixels: size {image.size}")
    rgb = resize_short_side(to_rgb(image), size)
    pixels = center_crop(np.asarray(rgb), size)                             # (size, size, 3) uint8
    scaled = (pixels.astype(np.float64) / 255).astype(np.float32)
    normalized = (scaled - np.float32(CLIP_MEAN)) / np.float32(CLIP_STD)
    return torch.from_numpy(np.ascontiguousarray(normalized.transpose(2, 0, 1)))  # (3, size, size)


def clip_preprocess_batch(images, size: int = 224) -> torch.Tensor:
    """(B, 3, size, size) from a non-empty list of images or paths."""
    images = list(images)
    if not images:
        raise ValueError("clip_preprocess_batch needs at least one image, got an empty list")
    return torch.stack([clip_preprocess(image, size) for image in images])


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> CLIP's per-channel normalization, on the images' device.

    The same arithmetic as the end of ``clip_preprocess``, for images that are already
    tensors of the right size, such as shapes-world renders.
    """
    mean = torch.tensor(CLIP_MEAN, device=images.device).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, device=images.device).view(3, 1, 1)
    return (images - mean) / std


def clip_unnormalize(pixels: torch.Tensor) -> torch.Tensor:
    """Undo the normalization, for showing a preprocessed image: (..., 3, H, W) -> [0, 1]."""
    mean = torch.tensor(CLIP_MEAN, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, device=pixels.device).view(3, 1, 1)
    return (pixels * std + mean).clamp(0, 1)
