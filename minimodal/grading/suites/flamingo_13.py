"""Graded checks for exercises/13_flamingo.ipynb: the perceiver resampler, the tanh gate, the latest-image mask.

Each check compares the learner's function with minimodal's on inputs drawn from ``seed``:
modules with every weight random (so a forgotten norm or gate shows), patch features off
centre, interleaved sequences with several images, and some text before the first one.
When an answer differs, the check names the classic mistake it reproduces: latents that
do not attend to themselves, a gate without its tanh or outside the residual, a token that
reads every earlier image. A graded function may not call minimodal's own implementation
of itself (``OWN`` below).

Longer than 300 lines because the notebook grades five functions, each with the mistakes it
names; one section per function, and a suite is one module per notebook.
"""

from __future__ import annotations

import contextlib
import copy

import torch

from minimodal.check import randomized
from minimodal.flamingo import GatedCrossAttentionBlock, latest_image, latest_image_mask
from minimodal.grading.checks import Check, expect_like, expect_tensor, in_learner
from minimodal.resampler import PerceiverAttention, PerceiverResampler, ResamplerConfig, ResamplerLayer

NOTEBOOK = "13_flamingo"
OWN = {  # minimodal's functions that make up each answer: a learner's function must not call them
    "perceiver_attention": (PerceiverAttention.forward,),
    "resample": (PerceiverResampler.forward, ResamplerLayer.forward, PerceiverAttention.forward),
    "image_mask": (latest_image_mask, latest_image),
    "gated_residual": (GatedCrossAttentionBlock.forward,),
    "gated_block": (GatedCrossAttentionBlock.forward,),
}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ints(low: int, high: int, g: torch.Generator) -> int:
    return int(torch.randint(low, high + 1, (), generator=g))


def _call(fn, *args):
    """The learner's function on copies of the inputs and modules, so that changing them spoils nothing."""
    return fn(*(a.clone() if isinstance(a, torch.Tensor) else copy.deepcopy(a) for a in args))


@contextlib.contextmanager
def _said(what: str, advice: str):
    """A learner's crash on these inputs, said as a lost check with ``advice``."""
    try:
        yield
    except NotImplementedError:
        raise
    except (RuntimeError, IndexError, ValueError) as error:
        raise AssertionError(f"{what} raised {type(error).__name__}: {error}. {advice}") from None


def _off_centre(g: torch.Generator, *shape: int) -> torch.Tensor:
    """Vectors with their own scale and offset: a forgotten LayerNorm changes the answer."""
    return torch.randn(*shape, generator=g) * 2.5 + torch.randn(shape[-1], generator=g)


# The perceiver's attention -----------------------------------------------------------------

def _perceiver_mistakes(attention: PerceiverAttention, features: torch.Tensor, latents: torch.Tensor):
    a, f, lat = attention, attention.context_norm(features), attention.latents_norm(latents)
    both = torch.cat([f, lat], dim=1)
    return [("the keys and values are [normalized patches; normalized latents]: the latents attend to "
             "themselves too, not to the patches only", a.attn(lat, f)),
            ("normalize the latents with their own LayerNorm, both as queries and where they join the keys",
             a.attn(latents, torch.cat([f, latents], dim=1))),
            ("the latents that join the keys and values are the normalized ones",
             a.attn(lat, torch.cat([f, latents], dim=1))),
            ("the queries are the normalized latents", a.attn(latents, both)),
            ("normalize the patches with their own LayerNorm before they join the keys",
             a.attn(lat, torch.cat([features, lat], dim=1))),
            ("each input has its own LayerNorm: the patches' for the patches, the latents' for the latents",
             a.attn(a.context_norm(latents), torch.cat([a.latents_norm(features), a.context_norm(latents)], 1))),
            ("return the update alone: the layer adds it to the latents", latents + a.attn(lat, both))]


def _check_perceiver(fn, seed: int) -> None:
    g = _gen(seed)
    for batch, patches, count, width, heads in [(2, 9, 4, 16, 2), (1, 1, 3, 8, 2), (3, 20, 6, 24, 4),
                                                (2, 5, 8, 12, 3)]:
        attention = randomized(PerceiverAttention(ResamplerConfig(width=width, heads=heads)), g)
        features, latents = _off_centre(g, batch, patches, width), _off_centre(g, batch, count, width)
        what = f"perceiver_attention of {count} latents over {patches} patches (batch {batch}, width {width})"
        with torch.no_grad():
            expected = attention(features, latents)
            got = expect_tensor(_call(fn, attention, features, latents), shape=expected.shape, what=what)
            expect_like(got, expected, lambda: _perceiver_mistakes(attention, features, latents), what)


# The resampler -----------------------------------------------------------------------------

def _resample_as(resampler: PerceiverResampler, features: torch.Tensor, *, final: bool = True,
                 mlp_norm: bool = True, residual: bool = True) -> torch.Tensor:
    """The resampler's forward, with one of its steps left out."""
    features = features.flatten(1, -2)
    latents = resampler.latents.expand(len(features), -1, -1)
    for layer in resampler.layers:
        update = layer.attention(features, latents)
        latents = latents + update if residual else update
        out = layer.mlp(layer.norm(latents) if mlp_norm else latents)
        latents = latents + out if residual else out
    return resampler.norm(latents) if final else latents


def _resample_mistakes(resampler: PerceiverResampler, features: torch.Tensor):
    apart = []
    if features.dim() == 4:  # a video: what one resampling per frame would give
        frames = [resampler(features[:, i]) for i in range(features.shape[1])]
        apart = [torch.stack(frames, 1).mean(1), frames[0], frames[-1]]
    return [("finish with the resampler's final LayerNorm", _resample_as(resampler, features, final=False)),
            ("the feed-forward reads the latents through the layer's own LayerNorm",
             _resample_as(resampler, features, mlp_norm=False)),
            ("each layer adds the attention's update, then the feed-forward's output, to the latents: two "
             "residuals, nothing replaced", _resample_as(resampler, features, residual=False)),
            *[("the frames are read together: all their patches form one sequence, not one resampling per "
               "frame", wrong) for wrong in apart]]


def _expect_resampled(fn, resampler: PerceiverResampler, features: torch.Tensor, what: str) -> None:
    expected = resampler(features)
    with _said(what, "flatten every axis between the batch and the width into one sequence of patches, "
                     "and repeat the learned latents once per sequence"):
        got = expect_tensor(_call(fn, resampler, features), what=what)
    if got.shape != expected.shape:
        raise AssertionError(f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}: one set "
                             f"of {expected.shape[1]} latents per sequence, whatever it reads")
    expect_like(got, expected, lambda: _resample_mistakes(resampler, features), what)


def _resampler(g: torch.Generator, width: int, heads: int, latents: int, layers: int) -> PerceiverResampler:
    config = ResamplerConfig(width=width, latents=latents, layers=layers, heads=heads)
    return randomized(PerceiverResampler(config), g)


def _check_resample(fn, seed: int) -> None:
    g = _gen(seed)
    for batch, patches, count, width, heads, layers in [(2, 9, 4, 16, 2, 2), (1, 3, 5, 8, 2, 1),
                                                        (3, 16, 3, 12, 3, 3)]:
        resampler = _resampler(g, width, heads, count, layers)
        with torch.no_grad():
            _expect_resampled(fn, resampler, _off_centre(g, batch, patches, width),
                              f"resample of {batch} images of {patches} patches into {count} latents, {layers} "
                              f"layer(s)")


def _check_frames(fn, seed: int) -> None:
    g = _gen(seed)
    for batch, frames, patches, count in [(2, 3, 4, 4), (1, 4, 6, 3)]:
        resampler = _resampler(g, 16, 2, count, 2)
        with torch.no_grad():
            _expect_resampled(fn, resampler, _off_centre(g, batch, frames, patches, 16),
                              f"resample of {batch} videos of {frames} frames of {patches} patches")


# The latest-image mask ---------------------------------------------------------------------

def _interleaved(g: torch.Generator, image_id: int, images: int, text_first: bool) -> torch.Tensor:
    """(B, T) ids of text and image markers. Without ``text_first``, each row opens with an image and
    holds 1 to ``images`` of them (some back to back); with it, each row holds text, then at most one
    image, and one row holds none."""
    rows = _ints(2, 4, g)
    text = lambda low, high: torch.randint(0, image_id, (_ints(low, high, g),), generator=g).tolist()  # noqa: E731
    lines = []
    for row in range(rows):
        if text_first:
            lines.append(text(1, 4) + ([image_id] + text(0, 3)) * (row > 0))
        else:
            count = images if row == 0 else _ints(1, images, g)
            lines.append(sum(([image_id] + text(0, 3) for _ in range(count)), []))
    length = max(map(len, lines)) + 1
    return torch.tensor([line + text(length - len(line), length - len(line)) for line in lines])


def _reads(owner: torch.Tensor, latest: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, V): token t reads visual token j when j's image is its latest one."""
    return (owner == latest[..., None])[:, None]


def _mask_mistakes(ids: torch.Tensor, image_id: int, images: int, tokens: int):
    count = (ids == image_id).long().cumsum(dim=1)                                  # images up to t
    latest, before = count - 1, torch.cat([torch.zeros_like(count[:, :1]), count[:, :-1]], 1) - 1
    owner = torch.arange(images * tokens) // tokens
    return [("a token reads its latest image only, not every image up to it", (owner <= latest[..., None])[:, None]),
            ("the marker reads its own image: count the images at or before each token, not strictly before",
             _reads(owner, before)),
            ("a token before any image reads nothing, not the first image", _reads(owner, latest.clamp(min=0))),
            ("an image's visual tokens sit together: visual token j belongs to image j // tokens_per_image",
             _reads(torch.arange(images * tokens) % images, latest)),
            ("images are counted from 0: the first marker opens image 0", _reads(owner, count))]


def _expect_mask(fn, ids: torch.Tensor, image_id: int, images: int, tokens: int, what: str) -> None:
    expected = latest_image_mask(ids, image_id, images, tokens)[0]
    got = expect_tensor(_call(fn, ids, image_id, images, tokens), what=what)
    if got.shape != expected.shape:
        raise AssertionError(f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}: batch, an "
                             f"axis of size 1 that the heads share, text tokens, visual tokens")
    if got.dtype != torch.bool:
        raise AssertionError(f"{what} is {str(got.dtype)[6:]}: a boolean mask, True where a token may read")
    if not torch.equal(got, expected):
        row, _, t, j = (got != expected).nonzero()[0].tolist()
        latest = int(latest_image(ids, image_id)[row, t])
        seen = f"its latest image is image {latest}" if latest >= 0 else "no image comes before it"
        hint = next((f". {h}" for h, wrong in _mask_mistakes(ids, image_id, images, tokens)
                     if torch.equal(got, wrong)), "")
        reads = "reads" if got[row, 0, t, j] else "does not read"
        raise AssertionError(f"{what}: in row {row}, token {t} ({seen}) {reads} visual token {j}, which belongs "
                             f"to image {j // tokens}{hint}")


def _check_masks(fn, seed: int, text_first: bool) -> None:
    g = _gen(seed)
    kind = "text before the first image, and a row without any" if text_first else "each row opening with an image"
    for _ in range(5):
        image_id, images, tokens = _ints(5, 50, g), _ints(2, 4, g), _ints(2, 3, g)
        ids = _interleaved(g, image_id, images, text_first)
        _expect_mask(fn, ids, image_id, images, tokens,
                     f"image_mask of ids {tuple(ids.shape)}, {kind}, {images} images of {tokens} tokens")


def _check_mask(fn, seed: int) -> None:
    _check_masks(fn, seed, text_first=False)


def _check_mask_before_images(fn, seed: int) -> None:
    _check_masks(fn, seed, text_first=True)


# The tanh gate -----------------------------------------------------------------------------

def _gate_mistakes(x: torch.Tensor, update: torch.Tensor, alpha: torch.Tensor):
    gate = alpha.tanh()
    return [("the gate is tanh(alpha), not alpha itself: it stays between -1 and 1", x + alpha * update),
            ("the gate scales the update only: x passes untouched, x + tanh(alpha)·update", gate * (x + update)),
            ("the gate scales the update, not x", gate * x + update),
            ("tanh, not the sigmoid: tanh(0) = 0 closes the gate at the start, sigmoid(0) = 1/2 does not",
             x + alpha.sigmoid() * update),
            ("not a mixture of x and the update: x keeps its full weight", (1 - gate) * x + gate * update)]


def _check_gate(fn, seed: int) -> None:
    g = _gen(seed)
    for shape, alpha in [((2, 5, 8), 1.5), ((3, 4, 16), -0.8), ((1, 7, 4), 3.0), ((2, 2, 6), 0.3)]:
        x, update = torch.randn(*shape, generator=g) * 2, torch.randn(*shape, generator=g) * 2
        alpha = torch.tensor([alpha])
        what = f"gated_residual of {shape} with alpha = {alpha.item():g}"
        expect_like(_call(fn, x, update, alpha), x + alpha.tanh() * update, _gate_mistakes(x, update, alpha), what)


def _closed_gate(gate, x: torch.Tensor, update: torch.Tensor, weights: torch.Tensor) -> tuple:
    """In the learner's process: the gate at alpha = 0, then the gradient of a weighted sum to alpha."""
    alpha = torch.zeros(1, requires_grad=True)
    out = gate(x, update, alpha)
    if isinstance(out, torch.Tensor) and out.requires_grad and out.shape == weights.shape:
        (out * weights).sum().backward()
    return out, alpha.grad


def _check_closed_gate(fn, seed: int) -> None:
    g = _gen(seed)
    x, update, weights = (torch.randn(2, 6, 8, generator=g) * 2 for _ in range(3))
    out, grad = in_learner(fn, _closed_gate, x, update, weights)
    what = "gated_residual at alpha = 0 (a gate just initialized)"
    expect_like(out, x, _gate_mistakes(x, update, torch.zeros(1)), f"{what}, which must give back x exactly", 1e-6)
    if grad is None:
        raise AssertionError(f"{what}: no gradient reached alpha, so the gate could never open; compute the "
                             f"result from alpha with tensor operations, nothing detached")
    expect_like(grad, (update * weights).sum().reshape(1), [],
                f"{what}: the gradient of alpha (tanh's slope at 0 is 1: the gate learns from the first step)", 1e-4)


# The gated cross-attention block -----------------------------------------------------------

def _block_as(block: GatedCrossAttentionBlock, x, visual, mask, sees, *, tanh: bool = True, zero: bool = True,
              after: bool = True, attn_norm: bool = True, ff_gate: bool = True, masked: bool = True):
    """The block's forward, with one of its steps changed."""
    gate = torch.tanh if tanh else (lambda alpha: alpha)
    safe = (mask if masked else torch.ones_like(mask)) | ~sees[:, None, :, None]
    read = block.cross_attn(block.attn_norm(x) if attn_norm else x, visual, safe)
    read = read * sees[..., None] if zero else read
    h = x + gate(block.attn_gate) * read
    out = block.mlp(block.mlp_norm(h if after else x))
    return h + (gate(block.mlp_gate) * out if ff_gate else out)


def _block_mistakes(block, x, visual, mask, sees):
    variant = lambda **change: _block_as(block, x, visual, mask, sees, **change)  # noqa: E731
    skipped = torch.where(sees[..., None], _block_as(block, x, visual, mask, sees), x)
    return [("each half is scaled by tanh of its gate, not by the gate itself", variant(tanh=False)),
            ("a token before any image reads nothing: zero its cross-attention output there",
             variant(zero=False)),
            ("only the cross-attention is skipped for a token before any image: the feed-forward half still "
             "runs", skipped),
            ("the feed-forward reads x after the gated cross-attention has been added to it", variant(after=False)),
            ("the cross-attention's queries come from the RMSNorm of x", variant(attn_norm=False)),
            ("the feed-forward's output is gated too, by tanh of its own gate", variant(ff_gate=False)),
            ("each token reads only the visual tokens its mask allows: pass the mask to the cross-attention",
             variant(masked=False))]


def _expect_block(fn, g: torch.Generator, text_first: bool) -> None:
    width, visual_width, heads, tokens, images = _ints(2, 4, g) * 4, _ints(2, 4, g) * 4, 2, _ints(1, 3, g), 3
    block = randomized(GatedCrossAttentionBlock(width, visual_width, heads, mlp_width=2 * width), g)
    with torch.no_grad():  # open gates, one of each sign, wide enough that tanh is not the identity
        block.attn_gate.fill_(0.6 + torch.rand((), generator=g).item())
        block.mlp_gate.fill_(-0.6 - torch.rand((), generator=g).item())
        ids = _interleaved(g, 7, images, text_first)
        mask, sees = latest_image_mask(ids, 7, images, tokens)
        x = _off_centre(g, *ids.shape, width)
        visual = torch.randn(len(ids), images * tokens, visual_width, generator=g)
        what = (f"gated_block of {tuple(ids.shape)} tokens reading {images} images of {tokens} visual tokens"
                + (", some tokens before any image" if text_first else ""))
        expected = block(x, visual, mask, sees)
        got = expect_tensor(_call(fn, block, x, visual, mask, sees), shape=expected.shape, what=what)
        if not torch.isfinite(got).all():
            raise AssertionError(f"{what} contains nan: a token before any image may read no visual token, and a "
                                 f"softmax over nothing is nan. Let such tokens read any visual token, then zero "
                                 f"their cross-attention output")
        expect_like(got, expected, lambda: _block_mistakes(block, x, visual, mask, sees), what)


def _check_block(fn, seed: int) -> None:
    g = _gen(seed)
    for _ in range(3):
        _expect_block(fn, g, text_first=False)


def _check_block_before_images(fn, seed: int) -> None:
    g = _gen(seed)
    for _ in range(3):
        _expect_block(fn, g, text_first=True)


CHECKS = [  # each runs in milliseconds on tiny modules
    Check("perceiver attention: the latents read [patches; latents]", "perceiver_attention", 2, _check_perceiver,
          timeout=5, references=OWN["perceiver_attention"]),
    Check("resample: latents per image, two residuals per layer, a final norm", "resample", 2, _check_resample,
          timeout=5, references=OWN["resample"]),
    Check("resample reads a video's frames together", "resample", 1, _check_frames, timeout=5,
          references=OWN["resample"]),
    Check("image_mask: each token reads its latest image", "image_mask", 2, _check_mask, timeout=5,
          references=OWN["image_mask"]),
    Check("image_mask: nothing to read before the first image", "image_mask", 1, _check_mask_before_images,
          timeout=5, references=OWN["image_mask"]),
    Check("gated_residual: x + tanh(alpha)·update", "gated_residual", 1, _check_gate, timeout=5,
          references=OWN["gated_residual"]),
    Check("gated_residual at alpha = 0 gives back x and still learns", "gated_residual", 1, _check_closed_gate,
          timeout=5, references=OWN["gated_residual"]),
    Check("gated_block: gated cross-attention, then the gated feed-forward", "gated_block", 2, _check_block,
          timeout=5, references=OWN["gated_block"]),
    Check("gated_block: no cross-attention before the first image", "gated_block", 1, _check_block_before_images,
          timeout=5, references=OWN["gated_block"]),
]
