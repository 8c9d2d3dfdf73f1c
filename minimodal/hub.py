"""Where checkpoints live on disk, and how one gets there: caches, names, downloads.

Two caches are searched, the ones the libraries a learner already uses write to:
OpenAI's ``clip`` package keeps ``~/.cache/clip/ViT-B-32.pt`` and the Hugging Face hub
keeps ``~/.cache/huggingface/hub/models--openai--clip-vit-base-patch32/snapshots/<sha>/``.
Nothing here downloads unless asked: ``download`` fetches a model through
``huggingface_hub`` (which honours ``HF_ENDPOINT``, ``HF_HOME`` and ``HF_HUB_OFFLINE``),
and only the files a CLIP needs.
"""

from __future__ import annotations

import os
from pathlib import Path

# OpenAI's ViT names -> their file in OpenAI's download folder, and the same weights on the hub.
OPENAI_FILES = {"ViT-B/32": "ViT-B-32.pt", "ViT-B/16": "ViT-B-16.pt", "ViT-L/14": "ViT-L-14.pt",
                "ViT-L/14@336px": "ViT-L-14-336px.pt"}
OPENAI_ON_HUB = {"ViT-B/32": "openai/clip-vit-base-patch32", "ViT-B/16": "openai/clip-vit-base-patch16",
                 "ViT-L/14": "openai/clip-vit-large-patch14",
                 "ViT-L/14@336px": "openai/clip-vit-large-patch14-336"}
# What a CLIP checkpoint folder needs: its settings, its weights, and its tokenizer's files.
CHECKPOINT_FILES = ["config.json", "model.safetensors", "vocab.json", "merges.txt",
                    "tokenizer_config.json", "special_tokens_map.json"]


def openai_cache_dir() -> Path:
    """OpenAI's clip.load keeps its downloads here (its ``download_root`` default)."""
    return Path("~/.cache/clip").expanduser()


def find_openai_file(name: str, cache_dir: Path | None = None) -> Path | None:
    """The .pt file of an OpenAI model name in OpenAI's download folder, or None."""
    path = (cache_dir or openai_cache_dir()) / OPENAI_FILES[name]
    return path if path.is_file() else None


def hf_cache_dirs() -> list[Path]:
    """Where the Hugging Face hub caches models, resolved from the environment as huggingface_hub does."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return [Path(os.environ[variable]).expanduser()]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return [Path(os.environ.get("HF_HOME") or cache / "huggingface").expanduser() / "hub"]


def find_in_hf_cache(model_id: str, cache_dirs: list[Path] | None = None) -> Path:
    """The snapshot folder of ``model_id`` (e.g. "openai/clip-vit-base-patch32") in the cache.

    The snapshot that refs/main points to when there is one, else any with a config.json.
    Raises FileNotFoundError listing every place it looked.
    """
    looked = []
    for cache in cache_dirs or hf_cache_dirs():
        repo = cache / ("models--" + model_id.replace("/", "--"))
        ref = repo / "refs" / "main"
        candidates = [repo / "snapshots" / ref.read_text().strip()] if ref.is_file() else []
        candidates += sorted((repo / "snapshots").glob("*"))
        for snapshot in candidates:
            if (snapshot / "config.json").is_file():
                return snapshot
        looked.append(str(repo / "snapshots"))
    raise FileNotFoundError(
        f"{model_id} is not in the Hugging Face cache; looked in {', '.join(looked)}. "
        f"Download it where there is internet (hf download {model_id}), "
        f"or pass a checkpoint folder instead.")


def download(model_id: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Fetch a CLIP checkpoint from the Hugging Face hub into its cache; the snapshot folder.

    Only config.json, the safetensors weights and the tokenizer's files are fetched, so a
    repo holding its weights in several formats costs one download and no pickle comes
    from the network. Needs the network (or ``HF_ENDPOINT`` pointing at a mirror). Each
    failure names the model and what to try, with huggingface_hub's own error as its cause.
    """
    from huggingface_hub import constants, snapshot_download  # installed with transformers; only needed here
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        folder = Path(snapshot_download(model_id, allow_patterns=CHECKPOINT_FILES, cache_dir=cache_dir))
    except RepositoryNotFoundError as err:  # also what the hub tells a stranger of a private or gated repo
        raise FileNotFoundError(
            f"{model_id} is not on the Hugging Face hub at {constants.ENDPOINT}: check the id (owner/name); "
            "a private or gated model needs `hf auth login` with a token allowed to read it") from err
    except OSError as err:  # huggingface_hub's errors for no connection, HF_HUB_OFFLINE, a bad transfer
        raise OSError(f"could not download {model_id} from the Hugging Face hub at {constants.ENDPOINT}: "
                      f"{err}") from err
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{model_id} on the hub has no model.safetensors, and minimodal downloads weights only as "
            f"safetensors. To use its pytorch_model.bin, fetch it yourself (hf download {model_id}); "
            "load then reads it from the cache with torch.load(weights_only=True).")
    return folder
