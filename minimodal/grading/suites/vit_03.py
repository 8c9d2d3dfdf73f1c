"""Graded checks for exercises/03_vit.ipynb: cutting an image into patches, and the ViT's forward.

patchify has two things to get right, and each check looks at one of them alone:
which pixels make up patch number i (reading order, row by row), and in what order each
patch's 3 x P x P numbers are laid out (the order of a Conv2d kernel, so that the patch
embedding can be the conv's weight reshaped). The first check compares each patch's
values as a set, so it does not care about the layout; the second uses images that are
exactly one patch, so the reading order cannot matter.

The forward from pixels to the pooled embedding is compared with ``VisionTransformer``'s on
towers whose every parameter, class token and positional embedding included, is drawn from
the check's seed: with the default initialisation a forgotten LayerNorm changes nothing.
"""

from __future__ import annotations

import torch

from minimodal.check import randomized
from minimodal.grading.checks import Check, expect_close, expect_like, expect_tensor
from minimodal.vit import VisionConfig, VisionTransformer, patchify

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


def _tower(g: torch.Generator, image: int, patch: int, width: int, layers: int, heads: int,
           embed: int | None) -> VisionTransformer:
    config = VisionConfig(image_size=image, patch_size=patch, width=width, layers=layers, heads=heads,
                          embed_dim=embed)
    return randomized(VisionTransformer(config), g)


def _variant(vit: VisionTransformer, pixels: torch.Tensor, *, cls_first: bool = True, positions: bool = True,
             ln_pre: bool = True, ln_post: bool = True, pool=lambda tokens: tokens[:, 0]) -> torch.Tensor:
    """The forward written out, with one piece changed: what a classic mistake computes."""
    patches = vit.patch_embed(pixels).flatten(2).transpose(1, 2)                # (B, N, D)
    cls = vit.class_embedding.expand(len(patches), 1, -1)                       # (B, 1, D)
    tokens = torch.cat([cls, patches] if cls_first else [patches, cls], dim=1)  # (B, 1 + N, D)
    tokens = tokens + vit.positional_embedding if positions else tokens
    tokens = vit.transformer(vit.ln_pre(tokens) if ln_pre else tokens)
    pooled = vit.ln_post(pool(tokens)) if ln_post else pool(tokens)             # (B, D)
    return pooled if vit.proj is None else vit.proj(pooled)


def _vit_mistakes(vit: VisionTransformer, pixels: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    behind = "the class token goes in front of the patches, at position 0, not behind them"
    mean = "the embedding is the class token's output, not the mean over the tokens"
    return [(behind, _variant(vit, pixels, cls_first=False)),
            (behind, _variant(vit, pixels, cls_first=False, pool=lambda tokens: tokens[:, -1])),
            ("add the positional embedding to the tokens, class token included",
             _variant(vit, pixels, positions=False)),
            (mean, _variant(vit, pixels, pool=lambda tokens: tokens[:, 1:].mean(1))),
            (mean, _variant(vit, pixels, pool=lambda tokens: tokens.mean(1))),
            ("normalize the tokens with ln_pre before the blocks", _variant(vit, pixels, ln_pre=False)),
            ("normalize the class token's output with ln_post before the projection",
             _variant(vit, pixels, ln_post=False))]


def _expect_embedding(fn, vit: VisionTransformer, batch: int, g: torch.Generator) -> None:
    size = vit.config.image_size
    pixels = torch.randn(batch, 3, size, size, generator=g)
    got = fn(vit, pixels)
    with torch.no_grad():
        expect_like(got, vit(pixels), lambda: _vit_mistakes(vit, pixels),
                    f"vit_forward of {batch} images of {size} x {size} pixels in {vit.config.patch_size} x "
                    f"{vit.config.patch_size} patches, width {vit.config.width}", tol=1e-4)


def _check_vit_forward(fn, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for batch, (image, patch, width, layers, heads, embed) in zip(
            (2, 3, 1), [(8, 4, 8, 1, 2, 6), (12, 4, 12, 2, 3, 5), (16, 8, 16, 2, 4, 16)]):
        _expect_embedding(fn, _tower(g, image, patch, width, layers, heads, embed), batch, g)


def _check_vit_unprojected(fn, seed: int) -> None:
    """A tower without a projection, as LLaVA holds one: the answer is the normalized class token."""
    def unprojected(vit, pixels):
        try:
            return fn(vit, pixels)
        except TypeError as error:
            raise AssertionError(f"vit_forward raised TypeError: {error}. This tower has no projection "
                                 "(vit.proj is None): return the class token after ln_post, (B, D)") from None

    g = torch.Generator().manual_seed(seed)
    _expect_embedding(unprojected, _tower(g, 8, 4, 12, 1, 3, None), 2, g)


OWN = {  # minimodal's functions that make up each answer: a learner's function must not call them
    "patchify": (patchify,),
    # patchify is not among vit_forward's: the learner may cut the patches with theirs or with the conv
    "vit_forward": (VisionTransformer.forward, VisionTransformer.embed, VisionTransformer.hidden_states),
}


CHECKS = [
    Check("patches in reading order, row by row", "patchify", 3, _check_reading_order,
          timeout=5, references=OWN["patchify"]),
    Check("each patch flattened channel, row, column", "patchify", 2, _check_patch_layout,
          timeout=5, references=OWN["patchify"]),
    Check("vit_forward gives VisionTransformer's image embedding", "vit_forward", 4, _check_vit_forward,
          timeout=10, references=OWN["vit_forward"]),
    Check("vit_forward without a projection: the normalized class token", "vit_forward", 1,
          _check_vit_unprojected, timeout=10, references=OWN["vit_forward"]),
]
