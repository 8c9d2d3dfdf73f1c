"""Zero-shot classification: prompts, ensembling and logits, against a caption-by-caption computation."""

import pytest
import torch
import torch.nn.functional as F

from minimodal.clip import CLIP, CLIPConfig
from minimodal.text import TextConfig
from minimodal.vit import VisionConfig
from minimodal.zeroshot import ZeroShotClassifier, class_embeddings, ensemble, prompts

VOCAB, CONTEXT, EOT = 64, 10, 63
CLASSES = ["red circle", "blue square", "green triangle"]
TEMPLATES = ["a {}", "a picture of a {}", "{} on a plain background"]


def toy_tokenize(texts: list[str]) -> torch.Tensor:
    """Words to ids by a stable hash, then end-of-text and padding: enough for a test model."""
    rows = []
    for text in texts:
        ids = [1 + sum(map(ord, word)) % (VOCAB - 2) for word in text.split()][:CONTEXT - 1] + [EOT]
        rows.append(ids + [0] * (CONTEXT - len(ids)))
    return torch.tensor(rows)


@pytest.fixture(scope="module")
def model() -> CLIP:
    torch.manual_seed(0)
    return CLIP(CLIPConfig(
        vision=VisionConfig(image_size=16, patch_size=8, width=32, layers=1, heads=2, embed_dim=12),
        text=TextConfig(vocab_size=VOCAB, context_length=CONTEXT, width=32, layers=1, heads=2,
                        embed_dim=12, eot_token_id=EOT))).eval()


def test_prompts_are_every_class_under_every_template_template_by_template():
    assert prompts(["cat", "dog"], ["a {}", "the {}"]) == ["a cat", "a dog", "the cat", "the dog"]
    with pytest.raises(ValueError, match="exactly one"):
        prompts(["cat"], ["a photo"])
    with pytest.raises(ValueError, match="at least one"):
        prompts([], ["a {}"])


def test_class_embeddings_are_the_normalized_mean_of_normalized_caption_embeddings(model):
    expected = []
    with torch.no_grad():
        for name in CLASSES:  # one caption at a time, with no batching to get wrong
            unit = [F.normalize(model.encode_text(toy_tokenize([t.format(name)]))[0], dim=0)
                    for t in TEMPLATES]
            mean = torch.stack(unit).mean(dim=0)
            expected.append(mean / mean.norm())
        weights = class_embeddings(model, toy_tokenize, CLASSES, TEMPLATES)
    assert weights.shape == (3, 12)
    assert torch.allclose(weights, torch.stack(expected), atol=1e-6)


def test_a_long_embedding_does_not_outvote_the_others():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(4, 3, 8, generator=g)   # (templates, classes, E)
    louder = features.clone()
    louder[0] *= 100.0                              # one template's embeddings 100 times longer
    assert torch.allclose(ensemble(louder), ensemble(features), atol=1e-6)
    unnormalized = F.normalize(louder.mean(dim=0), dim=-1)
    assert not torch.allclose(unnormalized, ensemble(features), atol=1e-2)


def test_ensemble_needs_templates_classes_and_features():
    with pytest.raises(ValueError, match="templates, classes, embed_dim"):
        ensemble(torch.randn(3, 8))


def test_logits_are_scaled_cosines_to_the_class_embeddings(model):
    classifier = ZeroShotClassifier(model, toy_tokenize, CLASSES, TEMPLATES)
    pixels = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = classifier(pixels)
        image = model.encode_image(pixels)
        weights = class_embeddings(model, toy_tokenize, CLASSES, TEMPLATES)
    cosines = F.cosine_similarity(image[:, None, :], weights[None, :, :], dim=-1)   # (5, 3)
    assert torch.allclose(logits, model.logit_scale.exp() * cosines, atol=1e-5)
    assert torch.equal(classifier.predict(pixels), cosines.argmax(dim=1))


def test_a_single_template_is_one_caption_per_class(model):
    with torch.no_grad():
        weights = class_embeddings(model, toy_tokenize, CLASSES)
        direct = F.normalize(model.encode_text(toy_tokenize(CLASSES)), dim=-1)
    assert torch.allclose(weights, direct, atol=1e-6)
