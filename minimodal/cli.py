"""The two things people most often do with a CLIP, from the shell.

    python -m minimodal classify photo.png --labels "a dog" "a cat"
    python -m minimodal search photos/ "a dog on a beach" -k 5

``classify`` is zero-shot classification (``minimodal.zeroshot``): the labels, written
into one or more templates, become the classifier's weights. ``search`` ranks the images
of a folder by the cosine between their embeddings and the query's.

Embedding a folder is the slow part of a search, and the folder rarely changes between
two searches, so the image embeddings are kept in ``FOLDER/.minimodal-cache/<model>.pt``.
An entry is reused while its file keeps the same size and modification time. The whole
cache is dropped when the model's weights change (the shapes model can be retrained):
the weights are recognized by a fingerprint, each tensor's name, shape and sum.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from minimodal.clip import CLIP
from minimodal.clip_api import load, tokenize
from minimodal.device import pick_device
from minimodal.zeroshot import ZeroShotClassifier

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
CACHE_DIR = ".minimodal-cache"
BATCH_SIZE = 32


class CommandError(Exception):
    """A mistake in the command line or its files: reported as one `error:` line, no traceback."""


def resolve_device(name: str | None) -> torch.device:
    """The device asked for, checked now so that a typo reads as one line, not a traceback."""
    try:
        device = pick_device(name)
    except RuntimeError as err:
        raise CommandError(str(err)) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"device {device} asked for, but this machine has no CUDA GPU")
    return device


def open_model(name: str, device: str | None) -> tuple[CLIP, Callable]:
    """The model and its preprocess; a name that leads nowhere is the user's error, not a bug."""
    device = resolve_device(device)
    try:
        return load(name, device=device)
    except (FileNotFoundError, ValueError) as err:
        raise CommandError(f"cannot load model {name!r}: {err}") from None


def text_tokenizer(model: CLIP) -> Callable[[list[str]], torch.Tensor]:
    """tokenize, padded to the model's own context, with an error that names a text too long for it."""
    context = model.config.text.context_length

    def tokenize_within(texts: list[str]) -> torch.Tensor:
        rows = []
        for text in texts:
            try:
                rows.append(tokenize([text], context_length=context))        # (1, context)
            except ValueError:
                message = f"{text!r} is longer than the {context} tokens this model reads"
                raise CommandError(message) from None
        return torch.cat(rows)                                                 # (B, context)
    return tokenize_within


def check_templates(templates: Sequence[str]) -> None:
    """Each template needs exactly one '{}', the place the label is written into."""
    for template in templates:
        if template.count("{}") != 1:
            raise CommandError(f"template {template!r} must hold exactly one '{{}}' where the label "
                               "goes, e.g. 'a photo of a {}'")


@torch.no_grad()
def classify(images: list[str], labels: list[str], templates: Sequence[str] = ("{}",),
             model_name: str = "shapes", device: str | None = None) -> None:
    """Print, for each image, the probability of every label, the most likely first."""
    check_templates(templates)
    model, preprocess = open_model(model_name, device)
    try:
        pixels = torch.stack([preprocess(image) for image in images])   # (B, 3, S, S)
    except (OSError, ValueError) as err:
        raise CommandError(str(err)) from None
    classifier = ZeroShotClassifier(model, text_tokenizer(model), labels, templates)
    probs = classifier(pixels.to(classifier.weights.device)).softmax(dim=-1).cpu()  # (B, C)
    width = max(len(label) for label in labels)
    for image, row in zip(images, probs):
        print(image)
        for p, c in zip(*row.sort(descending=True)):
            print(f"  {labels[c]:<{width}}  {100 * p:5.1f}%")
        print()


def find_images(folder: Path) -> list[Path]:
    """Every image file under the folder, at any depth, in a stable order."""
    if not folder.is_dir():
        raise CommandError(f"{folder} is not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise CommandError(f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)} files)")
    return paths


def fingerprint(model: CLIP) -> str:
    """A hash of every weight's name, shape and sum: cheap, and new whenever the model is retrained."""
    summary = [(name, tuple(t.shape), t.double().sum().item()) for name, t in model.state_dict().items()]
    return hashlib.sha256(repr(summary).encode()).hexdigest()[:16]


def cache_file(folder: Path, model_name: str) -> Path:
    """One cache per model name, in the folder itself, so it moves along with the images."""
    return folder / CACHE_DIR / (re.sub(r"[^A-Za-z0-9._-]+", "-", model_name).strip("-") + ".pt")


def read_cache(file: Path, weights: str) -> dict:
    """{relative path: entry}, or nothing when there is no cache or other weights wrote it."""
    if not file.is_file():
        return {}
    cache = torch.load(file, weights_only=True)
    return cache["entries"] if cache["weights"] == weights else {}


def write_cache(file: Path, weights: str, entries: dict) -> None:
    """Write beside, then rename: a search cut short never leaves half a cache behind."""
    try:
        file.parent.mkdir(exist_ok=True)
        partial = file.with_suffix(".tmp")
        torch.save({"weights": weights, "entries": entries}, partial)
        os.replace(partial, file)
    except OSError as err:  # a read-only folder can still be searched, only not faster next time
        print(f"warning: could not write the cache {file}: {err}", file=sys.stderr)


def stamp(path: Path) -> tuple[int, int]:
    """Size and modification time: what changes when a file is rewritten."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def embed_batch(paths: list[Path], folder: Path, model: CLIP, preprocess) -> dict:
    """{relative path: entry} for the images that can be read; the others are skipped with a warning."""
    readable, pixels = [], []
    for path in paths:
        try:
            pixels.append(preprocess(path))                                    # (3, S, S)
            readable.append(path)
        except (OSError, ValueError) as err:
            tqdm.write(f"warning: skipped {path.relative_to(folder)}: {err}", file=sys.stderr)
    if not pixels:
        return {}
    features = model.encode_image(torch.stack(pixels).to(next(model.parameters()).device))  # (B, E)
    units = F.normalize(features.float(), dim=-1).cpu()                        # (B, E)
    # clone: a row is a view, and torch.save would write the whole batch's storage with it
    return {path.relative_to(folder).as_posix(): {"stamp": stamp(path), "embedding": unit.clone()}
            for path, unit in zip(readable, units)}


def embed_images(paths: list[Path], folder: Path, model: CLIP, preprocess) -> dict:
    """embed_batch over all the paths, a batch at a time, with a progress bar on a terminal."""
    entries = {}
    with tqdm(total=len(paths), desc="embedding", unit="image", disable=None) as bar:
        for start in range(0, len(paths), BATCH_SIZE):
            batch = paths[start:start + BATCH_SIZE]
            entries.update(embed_batch(batch, folder, model, preprocess))
            bar.update(len(batch))
    return entries


def folder_embeddings(folder: Path, paths: list[Path], model: CLIP, preprocess, model_name: str) -> dict:
    """{relative path: entry} for every readable image; only new or changed files are embedded."""
    file, weights = cache_file(folder, model_name), fingerprint(model)
    cached = read_cache(file, weights)
    entries, stale = {}, []
    for path in paths:
        key = path.relative_to(folder).as_posix()
        if key in cached and cached[key]["stamp"] == stamp(path):
            entries[key] = cached[key]
        else:
            stale.append(path)
    entries.update(embed_images(stale, folder, model, preprocess))
    write_cache(file, weights, entries)
    return entries


@torch.no_grad()
def search(folder: str, query: str, k: int = 5, model_name: str = "shapes",
           device: str | None = None) -> None:
    """Print the k images of the folder nearest the query: rank, cosine, path."""
    if k < 1:
        raise CommandError(f"-k must be at least 1, got {k}")
    folder = Path(folder)
    paths = find_images(folder)  # before the model is loaded: an empty folder fails at once
    model, preprocess = open_model(model_name, device)
    ids = text_tokenizer(model)([query]).to(next(model.parameters()).device)  # (1, N)
    entries = folder_embeddings(folder, paths, model, preprocess, model_name)
    if not entries:
        raise CommandError(f"none of the images in {folder} could be read")
    names = sorted(entries)
    images = torch.stack([entries[name]["embedding"] for name in names])  # (N, E)
    text = F.normalize(model.encode_text(ids).float(), dim=-1).cpu()       # (1, E)
    best = (images @ text[0]).topk(min(k, len(names)))                    # k of (N,)
    for rank, (score, i) in enumerate(zip(best.values, best.indices), start=1):
        print(f"{rank:>3}  {score:6.3f}  {folder / names[i]}")
