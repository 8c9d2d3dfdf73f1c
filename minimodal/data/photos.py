"""A handful of real photographs that ship inside scikit-image, so no download is needed.

Our models train on synthetic shapes; these photos are where we look at what a real
image does to a patch grid, a preprocessing step or an attention map.
"""

from __future__ import annotations

from PIL import Image

# name -> what is in it, for captions and zero-shot prompts
PHOTOS = {
    "astronaut": "an astronaut",
    "chelsea": "a cat",
    "coffee": "a cup of coffee",
    "rocket": "a rocket",
    "camera": "a photographer with a camera",
    "coins": "coins",
    "clock": "a clock",
    "logo": "a logo",
    "colorwheel": "a colour wheel",
}


def load_photo(name: str) -> Image.Image:
    """One photo as a PIL image in its own mode (grayscale photos stay 'L', the logo is 'RGBA')."""
    if name not in PHOTOS:
        raise KeyError(f"no photo named {name!r}; available: {', '.join(PHOTOS)}")
    import skimage.data  # a reference dependency: imported only when a photo is asked for

    return Image.fromarray(getattr(skimage.data, name)())


def load_photos(names=None, mode: str = "RGB") -> dict[str, Image.Image]:
    """Photos by name, converted to ``mode`` (None keeps each photo's own mode)."""
    names = list(PHOTOS) if names is None else list(names)
    photos = {name: load_photo(name) for name in names}
    return {name: p if mode is None else p.convert(mode) for name, p in photos.items()}
