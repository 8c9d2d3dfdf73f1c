"""Code written for OpenAI's ``clip`` package runs on minimodal with only the import changed.

Each test below is one of the usual snippets (zero-shot probabilities, the similarity
softmax with topk, text-to-image search, image-to-text retrieval), written against
``minimodal`` exactly as it would be against ``clip``, on the course's shapes checkpoint
and images saved as PNG files, the way a user meets them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import minimodal
from minimodal.clip import CLIP, CLIPConfig
from minimodal.clip_api import load_model
from minimodal.convert_openai import to_openai_state_dict
from minimodal.data.transforms import normalize
from minimodal.pretrained import color_shape_classes, color_shape_labels, single_shapes, tokenize as shapes_tokenize
from minimodal.text import TextConfig
from minimodal.vit import VisionConfig

device = "cpu"


@pytest.fixture(scope="module")
def shapes_files(tmp_path_factory):
    """18 single-shape test renders saved as PNGs, with their captions and class labels."""
    batch = single_shapes("test", 18)
    folder = tmp_path_factory.mktemp("shapes")
    paths = []
    for i, image in enumerate(batch.images):
        path = folder / f"{i:02d}.png"
        Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy()).save(path)
        paths.append(path)
    return paths, batch.captions, color_shape_labels(batch.scenes)


@pytest.fixture(scope="module")
def loaded():
    return minimodal.load("shapes", device=device)


def test_probabilities_snippet(loaded, shapes_files):
    model, preprocess = loaded
    paths, captions, _ = shapes_files
    labels = [captions[0], captions[1], captions[2]]

    image = preprocess(Image.open(paths[0])).unsqueeze(0).to(device)
    text = minimodal.tokenize(labels).to(device)
    with torch.no_grad():
        image_features = model.encode_image(image)
        text_features = model.encode_text(text)
        logits_per_image, logits_per_text = model(image, text)
        probs = logits_per_image.softmax(dim=-1).cpu().numpy()

    assert image_features.shape == (1, 64) and text_features.shape == (3, 64)
    assert probs.shape == (1, 3) and np.isclose(probs.sum(), 1.0)
    assert probs.argmax() == 0, f"{captions[0]!r} should win on its own image, got {probs}"
    torch.testing.assert_close(logits_per_text, logits_per_image.T)


def test_zero_shot_topk_snippet(loaded, shapes_files):
    model, preprocess = loaded
    paths, _, labels = shapes_files
    classes = color_shape_classes()
    text_inputs = torch.cat([minimodal.tokenize(f"{c}") for c in classes]).to(device)
    right = 0
    for path, label in zip(paths, labels):
        image_input = preprocess(Image.open(path)).unsqueeze(0).to(device)
        with torch.no_grad():
            image_features = model.encode_image(image_input)
            text_features = model.encode_text(text_inputs)
        image_features /= image_features.norm(dim=-1, keepdim=True)
        text_features /= text_features.norm(dim=-1, keepdim=True)
        similarity = (100.0 * image_features @ text_features.T).softmax(dim=-1)
        values, indices = similarity[0].topk(5)
        assert values[0] >= values[-1] and len(set(indices.tolist())) == 5
        right += int(indices[0] == label)
    assert right >= 16, f"zero-shot top-1 on 18 PNG renders: {right}/18 (the checkpoint reaches ~96%)"


def test_text_to_image_search_snippet(loaded, shapes_files):
    model, preprocess = loaded
    paths, captions, _ = shapes_files
    images = torch.stack([preprocess(Image.open(p)) for p in paths]).to(device)
    with torch.no_grad():
        image_features = model.encode_image(images)
        image_features /= image_features.norm(dim=-1, keepdim=True)
        found = 0
        for query, path in zip(captions, paths):
            text_features = model.encode_text(minimodal.tokenize([query]).to(device))
            text_features /= text_features.norm(dim=-1, keepdim=True)
            scores = (image_features @ text_features.T).squeeze(1)
            best = scores.topk(3).indices.tolist()
            found += int(captions[best[0]] == query)
    assert found >= 16, f"the top image carries the query's caption for {found}/18 queries"


def test_image_to_text_retrieval_snippet(loaded, shapes_files):
    model, preprocess = loaded
    paths, captions, _ = shapes_files
    candidates = sorted(set(captions))
    with torch.no_grad():
        text_features = model.encode_text(minimodal.tokenize(candidates).to(device))
        text_features /= text_features.norm(dim=-1, keepdim=True)
        right = 0
        for path, caption in zip(paths, captions):
            image_features = model.encode_image(preprocess(Image.open(path)).unsqueeze(0).to(device))
            image_features /= image_features.norm(dim=-1, keepdim=True)
            probs = (100.0 * image_features @ text_features.T).softmax(dim=-1)
            right += int(candidates[int(probs.argmax())] == caption)
    assert right >= 16, f"image-to-text top-1: {right}/18"


def test_preprocess_of_a_saved_render_is_the_render_normalized(loaded, shapes_files):
    _, preprocess = loaded
    paths, _, _ = shapes_files
    pixels = torch.from_numpy(np.array(Image.open(paths[0]).convert("RGB"))).permute(2, 0, 1) / 255
    torch.testing.assert_close(preprocess(paths[0]), normalize(pixels[None])[0], atol=1e-6, rtol=0)
    array = np.asarray(Image.open(paths[0]).convert("RGB"))  # (H, W, 3) uint8, as transformers accepts
    torch.testing.assert_close(preprocess(array), preprocess(paths[0]))


def test_tokenize_pads_to_77_and_the_shapes_model_reads_it(loaded):
    model, _ = loaded
    long, short = minimodal.tokenize(["a red circle"]), shapes_tokenize(["a red circle"])
    assert long.shape == (1, 77) and short.shape == (1, 24)
    assert torch.equal(long[:, :24], short) and not long[:, 24:].any()
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(long), model.encode_text(short), atol=0, rtol=0)
    with pytest.raises(ValueError, match="truncate=True"):
        minimodal.tokenize(["word " * 80])
    assert minimodal.tokenize(["word " * 80], truncate=True)[0, -1] == minimodal.tokenize("")[0, 1]


def test_openai_names_resolve_from_openais_download_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError) as missing:
        minimodal.load("ViT-B/32")
    message = str(missing.value)
    assert str(tmp_path / ".cache" / "clip" / "ViT-B-32.pt") in message
    assert "models--openai--clip-vit-base-patch32" in message and "download=True" in message

    torch.manual_seed(0)  # OpenAI's files do not store head counts: heads are 64 wide
    mine = CLIP(CLIPConfig(VisionConfig(image_size=32, patch_size=8, width=128, layers=1, heads=2, embed_dim=32),
                           TextConfig(vocab_size=100, context_length=16, width=64, layers=1, heads=1,
                                      embed_dim=32, eot_token_id=99)))
    for p in mine.parameters():
        torch.nn.init.normal_(p)
    (tmp_path / ".cache" / "clip").mkdir(parents=True)
    torch.save(to_openai_state_dict(mine), tmp_path / ".cache" / "clip" / "ViT-B-32.pt")
    model, preprocess = minimodal.load("ViT-B/32", device="cpu")
    for (name, ours), theirs in zip(mine.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(theirs, ours, atol=0, rtol=0, msg=name)
    assert preprocess.keywords["size"] == 32 and not model.training


def test_unknown_names_list_what_is_accepted():
    with pytest.raises(FileNotFoundError, match="shapes, ViT-B/32"):
        load_model("no-such-model")
    assert minimodal.available_models()[:2] == ["shapes", "ViT-B/32"]
