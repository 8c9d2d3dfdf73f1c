"""Graded checks for exercises/03_vit.ipynb: cutting an image into a sequence of patches.

patchify has two things to get right, and each check looks at one of them alone:
which pixels make up patch number i (reading order, row by row), and in what order each
patch's 3 x P x P numbers are laid out (the order of a Conv2d kernel, so that the patch
embedding can be the conv's weight reshaped). The first check compares each patch's
values as a set, so it does not care about the layout; the second uses images that are
exactly one patch, so the reading order cannot matter.
"""

from __future__ import annotations

import torch

from minimodal.grading.checks import Check, expect_close, expect_tensor
from minimodal.vit import patchify

NOTEBOOK = "03_vit"

# (batch, channels, height, width, patch): square and rectangular images, RGB and grey
SHAPES = [(2, 3, 8, 8, 4), (1, 3, 12, 8, 4), (2, 1, 6, 15, 3), (3, 3, 32, 64, 16)]


def _patches(fn, pixels: torch.Tensor, patch: int) -> torch.Tensor:
    batch, channels, height, width = pixels.shape
    expected = (batch, (height // patch) * (width // patch), channels * patch * patch)
    return expect_tensor(fn(pixels, patch), shape=expected,
                         what=f"patchify of {tuple(pixels.shape)} with patch size {patch}")


def _check_reading_order(fn, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for batch, channels, height, width, patch in SHAPES:
        pixels = torch.randn(batch, channels, height, width, generator=g)
        got = _patches(fn, pixels, patch).sort(dim=-1).values
        expected = patchify(pixels, patch).sort(dim=-1).values
        same = (got - expected).abs().amax(dim=-1) < 1e-6  # (B, N): which patches hold the right pixels
        if not same.all():
            b, i = (~same).nonzero()[0].tolist()
            cols = width // patch
            raise AssertionError(
                f"patch {i} of image {b} in a {height // patch} x {cols} grid should hold the pixels of "
                f"row {i // cols}, column {i % cols} (rows {i // cols * patch}..{(i // cols + 1) * patch - 1}, "
                f"columns {i % cols * patch}..{(i % cols + 1) * patch - 1}): it does not. Patches go row "
                f"by row, left to right; reshape to (B, C, rows, P, cols, P) and permute before flattening")


def _check_patch_layout(fn, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for channels, patch in [(3, 4), (1, 5), (3, 2)]:
        pixels = torch.randn(2, channels, patch, patch, generator=g)  # one patch per image
        got = _patches(fn, pixels, patch)
        expected = patchify(pixels, patch)
        channels_last = pixels.permute(0, 2, 3, 1).reshape(2, 1, -1)
        if channels > 1 and torch.allclose(got, channels_last):
            raise AssertionError("each patch is flattened channels last (row, column, channel); flatten "
                                 "it channel first, (C, P, P), the layout of a Conv2d kernel")
        expect_close(got, expected, what=f"a {channels} x {patch} x {patch} image as one flattened patch")


OWN = {  # minimodal's functions that make up each answer: a learner's function must not call them
    "patchify": (patchify,),
}


CHECKS = [
    Check("patches in reading order, row by row", "patchify", 3, _check_reading_order,
          timeout=5, references=OWN["patchify"]),
    Check("each patch flattened channel, row, column", "patchify", 2, _check_patch_layout,
          timeout=5, references=OWN["patchify"]),
]
