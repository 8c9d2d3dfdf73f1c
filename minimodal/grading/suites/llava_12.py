"""Graded checks for exercises/12_llava.ipynb: the projector, splicing image tokens, the chat label mask.

Each check compares the learner's function with minimodal.llava's on random inputs from
the seed: batches whose rows hold several images, one or none, padded on either side, and
chats of several turns. When an answer differs, the check names the classic mistake it
reproduces. A graded function may not call minimodal's own implementation of itself: the
learner's process watches for it while the learner's code runs (``OWN`` below).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from minimodal.grading.checks import Check, expect_like, expect_tensor, in_learner
from minimodal.llava import IGNORE, Projector, _latest_before, chat_labels, splice_images

NOTEBOOK = "12_llava"
OWN = {  # minimodal's functions that make up each answer: a learner's function must not call them
    "project": (Projector.forward,),
    "splice_images": (splice_images,),
    "chat_labels": (chat_labels, _latest_before),
}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _call(fn, *args):
    """The learner's function on copies of the inputs, so that changing them spoils nothing."""
    return fn(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args))


def _ints(low: int, high: int, g: torch.Generator) -> int:
    return int(torch.randint(low, high + 1, (), generator=g))


# The projector -----------------------------------------------------------------------------

def _check_project(fn, seed: int) -> None:
    g = _gen(seed)
    for shape, lm_width in [((2, 4, 8), 16), ((3, 9, 12), 20), ((5, 6), 6), ((1, 1, 4), 10)]:
        linear_1, linear_2 = nn.Linear(shape[-1], lm_width), nn.Linear(lm_width, lm_width)
        with torch.no_grad():  # weights large enough that GELU's curve shows on both sides of 0
            for layer in (linear_1, linear_2):
                layer.weight.normal_(0.0, 2.0 / layer.in_features ** 0.5, generator=g)
                layer.bias.normal_(0.0, 0.5, generator=g)
            features = torch.randn(*shape, generator=g)
            hidden = linear_1(features)
            got = expect_tensor(_call(fn, features, linear_1, linear_2),
                                shape=(*shape[:-1], lm_width), what=f"project of {shape} features")
            mistakes = [("the activation is GELU, not ReLU", linear_2(F.relu(hidden))),
                        ("the projector is two linear layers: after GELU comes linear_2", F.gelu(hidden)),
                        ("LLaVA-1.5 uses the exact GELU, x·Φ(x), not its tanh approximation",
                         linear_2(F.gelu(hidden, approximate="tanh"))),
                        ("GELU goes between the two layers only, not after linear_2", F.gelu(linear_2(F.gelu(hidden)))),
                        ("GELU, not SiLU", linear_2(F.silu(hidden)))]
            expect_like(got, linear_2(F.gelu(hidden)), mistakes, f"project of {shape} features to width {lm_width}")


# Splicing the image tokens -----------------------------------------------------------------

def _batch(g: torch.Generator, image_id: int, pad_id: int):
    """Ids (B, T) whose rows hold 0, 1 or several runs of N placeholders (at least one row none),
    padded left or right; their embeddings (B, T, D) and the batch's image tokens (I, N, D)."""
    tokens, width, rows = _ints(1, 4, g), _ints(3, 8, g), _ints(2, 4, g)
    counts = [_ints(0, 2, g) for _ in range(rows)]
    counts[_ints(0, rows - 1, g)] = 0
    counts[(counts.index(0) + 1) % rows] = max(counts[(counts.index(0) + 1) % rows], 2)
    lines = []
    for count in counts:
        pieces = [torch.randint(0, image_id, (_ints(0, 4, g),), generator=g).tolist() for _ in range(count + 1)]
        lines.append(sum(([image_id] * tokens + piece for piece in pieces[1:]), pieces[0]))
    length, left = max(map(len, lines)), bool(_ints(0, 1, g))
    ids = torch.tensor([[pad_id] * (length - len(line)) * left + line + [pad_id] * (length - len(line)) * (not left)
                        for line in lines])
    return ids, torch.randn(rows, length, width, generator=g), torch.randn(sum(counts), tokens, width, generator=g)


def _fill(embeddings: torch.Tensor, slots: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The slots (the placeholder positions, in the order given) overwritten by the tokens in turn."""
    out = embeddings.clone()
    out[slots[:, 0], slots[:, 1]] = tokens.reshape(-1, embeddings.shape[-1])
    return out


def _splice_mistakes(embeddings, ids, image_id, images) -> list[tuple[str, torch.Tensor]]:
    slots, across = (ids == image_id).nonzero(), (ids.T == image_id).nonzero().flip(-1)
    return [("image i fills the i-th run of placeholders in reading order, row by row: not column by column",
             _fill(embeddings, across, images)),
            ("the images go in the order given: the first image fills the first run",
             _fill(embeddings, slots, images.flip(0))),
            ("an image's tokens go in their order: its first token at the run's first position",
             _fill(embeddings, slots, images.flip(1))),
            ("the positions that do not hold the placeholder keep their text embeddings",
             _fill(torch.zeros_like(embeddings), slots, images))]


@contextlib.contextmanager
def _said_as_splice(what: str, ids: torch.Tensor, images: torch.Tensor):
    """The learner's splice errors, said in the splice's terms."""
    try:
        yield
    except NotImplementedError:  # a RuntimeError too, but the worker words it for the learner
        raise
    except (RuntimeError, IndexError, ValueError) as error:
        raise AssertionError(f"{what}: splice_images raised {type(error).__name__}: {error}. The batch holds "
                             f"{len(images)} images for {len(ids)} rows: a row may hold several or none, and "
                             f"image i fills the i-th run of placeholders, counted row by row") from None


def _expect_spliced(got, embeddings: torch.Tensor, what: str) -> torch.Tensor:
    got = expect_tensor(got, what=what)
    if got.shape != embeddings.shape:
        raise AssertionError(f"{what} has shape {tuple(got.shape)}, expected {tuple(embeddings.shape)}: the "
                             f"sequence keeps its length, the image tokens overwrite the placeholders' "
                             f"embeddings where they stand")
    return got


def _splice(fn, embeddings, ids, image_id, images, what: str) -> torch.Tensor:
    """The learner's splice, its errors and its shape said in the splice's terms."""
    with _said_as_splice(what, ids, images):
        got = _call(fn, embeddings, ids, image_id, images)
    return _expect_spliced(got, embeddings, what)


def _check_splice(fn, seed: int) -> None:
    g = _gen(seed)
    for _ in range(6):
        image_id, pad_id = _ints(30, 60, g), 61
        ids, embeddings, images = _batch(g, image_id, pad_id)
        what = f"splice_images of {len(images)} images of {images.shape[1]} tokens into ids {tuple(ids.shape)}"
        got = _splice(fn, embeddings, ids, image_id, images, what)
        expect_like(got, splice_images(embeddings, ids, image_id, images),
                    _splice_mistakes(embeddings, ids, image_id, images), what, 1e-6)


def _splice_gradients(splice, embeddings, ids, image_id, images, weights) -> tuple:
    """In the splice's process: bfloat16 embeddings spliced, then backward; the result and both gradients."""
    text, image = embeddings.bfloat16().requires_grad_(), images.clone().requires_grad_()
    out = splice(text, ids, image_id, image)
    if isinstance(out, torch.Tensor) and out.requires_grad and out.shape == weights.shape:
        (out.float() * weights).sum().backward()
    return out, image.grad, text.grad


def _check_splice_gradients(fn, seed: int) -> None:
    """The projector learns through the splice: gradients reach the image tokens; embeddings' dtype out."""
    g = _gen(seed)  # one image, so that the order of the tokens is the other check's business
    ids, start = torch.randint(0, 7, (3, 8), generator=g), _ints(0, 5, g)
    ids[1, start:start + 3] = 7
    embeddings, images, weights = (torch.randn(*shape, generator=g) for shape in [(3, 8, 6), (1, 3, 6), (3, 8, 6)])
    what = "splice_images of bfloat16 embeddings and float32 image tokens"
    with _said_as_splice(what, ids, images):
        out, image_grad, text_grad = in_learner(fn, _splice_gradients, embeddings, ids, 7, images, weights)
    if _expect_spliced(out, embeddings, what).dtype != torch.bfloat16:
        raise AssertionError(f"{what} returned {str(out.dtype)[6:]}: return the embeddings' dtype")
    for grad, name in [(image_grad, "image tokens, so the projector could not learn"),
                       (text_grad, "text embeddings")]:
        if grad is None:
            raise AssertionError(f"{what}: no gradient reached the {name}; build the result from the "
                                 f"embeddings and the image tokens with tensor operations, nothing detached")
    _, want_image, want_text = _splice_gradients(splice_images, embeddings, ids, 7, images, weights)
    expect_like(image_grad, want_image, [], "the gradient of the image tokens", 1e-2)
    expect_like(text_grad, want_text, [], "the gradient of the text embeddings (zero at the placeholders)", 1e-2)


def _check_splice_count(fn, seed: int) -> None:
    g = _gen(seed)
    ids, embeddings, images = _batch(g, 5, 9)
    count, wrong = int((ids == 5).sum()), ids.clone()
    wrong[wrong == 5] = torch.tensor([9] + [5] * (count - 1))
    for bad, kept, why in [(wrong, images, "one placeholder too few"), (ids, images[:-1], "an image too few"),
                           (ids, torch.cat([images, images], 1), "images of twice the tokens")]:
        found, needed = int((bad == 5).sum()), kept.shape[0] * kept.shape[1]
        what = f"splice_images with {why} ({found} placeholders; {kept.shape[0]} images of {kept.shape[1]} tokens)"
        try:
            _call(fn, embeddings, bad, 5, kept)
        except ValueError as error:
            if not (str(found) in str(error) and str(needed) in str(error)):
                raise AssertionError(f"{what}: the ValueError says '{error}'; say how many placeholders the ids "
                                     f"hold ({found}) and how many the images need ({needed})") from None
            continue
        except NotImplementedError:
            raise
        except (RuntimeError, IndexError) as error:
            raise AssertionError(f"{what} raised {type(error).__name__} ({error}): count the placeholders "
                                 f"first and raise ValueError when they are not images × tokens") from None
        raise AssertionError(f"{what} raised nothing: when the placeholders are not images × tokens "
                             f"({found} ≠ {needed}), raise ValueError saying both numbers")


# The chat labels ---------------------------------------------------------------------------

def _chats(g: torch.Generator, base: int, open_end: bool = False) -> tuple[torch.Tensor, dict]:
    """Rows of BOS, context, image, then turns user·q·end·assistant·a·end, EOS; right or left padded.

    With ``open_end``, the edge cases: a chat left open after <|assistant|> (a generation
    prompt), one cut inside an answer, one with no assistant turn at all, one all padding.
    """
    s = dict(zip(("pad", "bos", "eos", "image", "user", "assistant", "end"), range(base, base + 7)))
    text = lambda low, high: torch.randint(0, base, (_ints(low, high, g),), generator=g).tolist()  # noqa: E731
    lines = []
    for _ in range(_ints(3, 5, g)):
        line = [s["bos"], *text(1, 3), *[s["image"]] * _ints(1, 4, g), *text(0, 2)]
        for _ in range(_ints(1, 4, g)):
            line += [s["user"], *text(1, 5), s["end"], s["assistant"], *text(1, 4), s["end"]]
        lines.append(line + [s["eos"]])
    if open_end:
        lines += [lines[0][:lines[0].index(s["assistant"]) + 1], lines[1][:lines[1].index(s["assistant"]) + 2],
                  [s["bos"], *text(2, 4), s["eos"]], []]
    length, left = max(map(len, lines)), bool(_ints(0, 1, g))
    pad = lambda line: [s["pad"]] * (length - len(line))  # noqa: E731
    return torch.tensor([pad(line) * left + line + pad(line) * (not left) for line in lines]), s


def _learned(ids: torch.Tensor, s: dict, strict: bool = True, markers=("assistant", "end")) -> torch.Tensor:
    """Where the latest of the first marker comes after the latest of the second, before each token or up to it."""
    positions = torch.arange(ids.shape[1]).expand_as(ids)
    latest = [torch.where(ids == s[marker], positions, -1).cummax(1).values for marker in markers]
    if strict:
        latest = [F.pad(t[:, :-1], (1, 0), value=-1) for t in latest]
    return latest[0] > latest[1]


def _label_mistakes(ids: torch.Tensor, s: dict) -> list[tuple[str, torch.Tensor]]:
    keep = lambda learned: ids.masked_fill(~learned, IGNORE)  # noqa: E731
    right, marker = _learned(ids, s), ids == s["assistant"]
    seen = marker.cumsum(1) > 0  # from the first <|assistant|> on
    after_first = [seen, seen & ~marker, F.pad(seen[:, :-1], (1, 0)), F.pad(seen[:, :-1], (1, 0)) & ~marker]
    inverted = "the answers are masked and the user's turns learned: it is the other way round"
    return [(inverted, keep(~right)), (inverted, keep(_learned(ids, s, markers=("end", "assistant")))),
            ("the <|end|> closing an answer is learned too: it teaches the model where to stop",
             keep(right & (ids != s["end"]))),
            ("the <|assistant|> marker itself is not learned: look at the markers strictly before each token",
             keep(right | (ids == s["assistant"]))),
            ("look at the markers strictly before each token, not up to and including it",
             keep(_learned(ids, s, strict=False))),
            *[("an answer ends at its <|end|>: the user's next turn is not learned", keep(wrong))
              for wrong in after_first],
            ("an answer cut short is learned as far as it goes: no <|end|> has to follow",
             keep(right & ((ids == s["end"]).flip(1).cumsum(1).flip(1) > 0)))]


def _expect_labels(fn, ids: torch.Tensor, s: dict, what: str) -> None:
    got = expect_tensor(_call(fn, ids, s["assistant"], s["end"]), shape=ids.shape, what=what)
    expected = chat_labels(ids, s["assistant"], s["end"])
    if got.dtype != torch.long:
        raise AssertionError(f"{what} are {str(got.dtype)[6:]}: cross-entropy takes int64 labels, like the ids")
    if not torch.equal(got, expected):
        row, position = (got != expected).nonzero()[0].tolist()
        token = int(ids[row, position])
        name = {v: f"<|{k}|>" for k, v in s.items()}.get(token, f"the text token {token}")
        hint = next((f". {h}" for h, wrong in _label_mistakes(ids, s) if torch.equal(got, wrong)), "")
        raise AssertionError(f"{what}: row {row}, position {position} ({name}) has label "
                             f"{int(got[row, position])}, expected {int(expected[row, position])}{hint}")


def _check_labels(fn, seed: int) -> None:
    g = _gen(seed)
    for _ in range(5):
        ids, s = _chats(g, _ints(20, 500, g))
        _expect_labels(fn, ids, s, f"the labels of {len(ids)} chats of {ids.shape[1]} tokens")


def _check_label_edges(fn, seed: int) -> None:
    g = _gen(seed)
    for _ in range(3):
        ids, s = _chats(g, _ints(20, 500, g), open_end=True)
        _expect_labels(fn, ids, s, "the labels of chats left open after <|assistant|>, cut inside an answer, "
                                   "with no assistant turn, and all padding")


CHECKS = [  # each runs in milliseconds on tiny tensors
    Check("project: linear_2(gelu(linear_1(features)))", "project", 2, _check_project,
          timeout=5, references=OWN["project"]),
    Check("splice_images: image i in the i-th run of placeholders, row by row", "splice_images", 3,
          _check_splice, timeout=5, references=OWN["splice_images"]),
    Check("splice_images keeps the gradient to the image tokens and the embeddings' dtype", "splice_images", 1,
          _check_splice_gradients, timeout=5, references=OWN["splice_images"]),
    Check("splice_images raises ValueError when placeholders ≠ images × tokens", "splice_images", 1,
          _check_splice_count, timeout=5, references=OWN["splice_images"]),
    Check("chat_labels: each answer and its closing <|end|>, nothing else", "chat_labels", 3, _check_labels,
          timeout=5, references=OWN["chat_labels"]),
    Check("chat_labels of open, cut, answerless and empty chats", "chat_labels", 1, _check_label_edges,
          timeout=5, references=OWN["chat_labels"]),
]
