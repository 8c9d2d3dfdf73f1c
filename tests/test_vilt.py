"""ViLT against transformers' ViltForQuestionAnswering, and its VQA targets and loss.

transformers' ViLT draws the image tokens with ``torch.multinomial`` on every forward.
``max_image_length=-1`` (set by ``vilt_hf_config``) makes it keep every patch, but the
draw without replacement still shuffles their order, and seeding would only make the
shuffle repeatable, not undo it. A patch's position embedding travels with it and
attention is blind to order, so the shuffle moves image tokens and changes nothing else:
the pooler and logits (read from the first token) and the text tokens must be equal, and
the image tokens equal up to that order, which is what these tests compare.
"""

from __future__ import annotations

import pytest
import torch
from transformers import ViltConfig as HFViltConfig
from transformers import ViltForQuestionAnswering

from minimodal.check import randomized
from minimodal.convert import CheckpointMismatch
from minimodal.convert_vilt import load_vilt_state_dict, to_vilt_state_dict, vilt_hf_config
from minimodal.vilt import ViLT, ViltConfig, vqa_bce_loss, vqa_soft_scores

TEXT = 6  # question length in the test batch


def config() -> ViltConfig:
    """32-pixel images of 16 patches, two blocks of width 32, 50 words, 7 answers."""
    return ViltConfig(width=32, layers=2, heads=4, image_size=32, patch_size=8, vocab_size=50,
                      max_length=16, answers=7)


def reference_of(model: ViLT) -> ViltForQuestionAnswering:
    """transformers' model built from its own config class, given our weights strictly."""
    reference = ViltForQuestionAnswering(HFViltConfig(**vilt_hf_config(model.config)))
    reference.load_state_dict(to_vilt_state_dict(model), strict=True)
    return reference.eval()


def batch(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three questions, two of them padded, and three random images."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (3, TEXT), generator=generator)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4])
    pixels = torch.randn(3, 3, 32, 32, generator=generator)
    return ids.masked_fill(mask == 0, 0).to(device), mask.to(device), pixels.to(device)


@pytest.fixture
def models():
    model = randomized(ViLT(config()), seed=3)
    return model, reference_of(model)


@torch.no_grad()
def test_pooler_and_logits_equal_transformers(models, device):
    model, reference = (m.to(device) for m in models)
    ids, mask, pixels = batch(device)
    ours = model(ids, mask, pixels)
    theirs = reference(input_ids=ids, attention_mask=mask, pixel_values=pixels,
                       pixel_mask=torch.ones(3, 32, 32, dtype=torch.long, device=device), output_hidden_states=True)
    assert ours.logits.shape == theirs.logits.shape == (3, 7)
    assert ours.logits.std() > 0.1  # randomized weights: outputs that differ from question to question
    torch.testing.assert_close(ours.logits, theirs.logits, atol=1e-5, rtol=0)
    pooled = reference.vilt.pooler(reference.vilt.layernorm(theirs.hidden_states[-1]))
    torch.testing.assert_close(ours.pooled, pooled, atol=1e-5, rtol=0)
    # The text tokens and the image class token sit where transformers puts them too.
    theirs_sequence = reference.vilt.layernorm(theirs.hidden_states[-1])
    torch.testing.assert_close(ours.sequence[:, :TEXT + 1], theirs_sequence[:, :TEXT + 1], atol=1e-5, rtol=0)


@torch.no_grad()
def test_image_tokens_equal_transformers_up_to_its_shuffle(models, device):
    model, reference = (m.to(device) for m in models)
    ids, mask, pixels = batch(device)
    ours = model(ids, mask, pixels).sequence[:, TEXT + 1:]                       # (B, N, D)
    theirs = reference.vilt(input_ids=ids, attention_mask=mask, pixel_values=pixels).last_hidden_state[:, TEXT + 1:]
    distance = torch.cdist(theirs, ours)                                         # (B, N, N)
    nearest = distance.argmin(dim=-1)                                            # (B, N)
    assert (nearest.sort(dim=-1).values == torch.arange(16, device=device)).all()  # a permutation
    assert distance.min(dim=-1).values.max() < 1e-4


@torch.no_grad()
def test_text_padding_is_masked(models):
    """A padded word's id must not change the answer: only the mask says it is there."""
    model, _ = models
    ids, mask, pixels = batch(torch.device("cpu"))
    other = ids.clone()
    other[1, 4:] = 7
    torch.testing.assert_close(model(ids, mask, pixels).logits, model(other, mask, pixels).logits)


def test_soft_scores_follow_the_vqa_rule():
    scores = vqa_soft_scores([["2", "2", "2", "3"], ["red"] * 5 + ["blue", "purple"], []],
                             ["2", "3", "red", "blue"])
    expected = torch.tensor([[1.0, 1 / 3, 0, 0], [0, 0, 1.0, 1 / 3], [0, 0, 0, 0]])
    torch.testing.assert_close(scores, expected)
    with pytest.raises(ValueError, match="one list of answer strings per question"):
        vqa_soft_scores(["2", "3"], ["2", "3"])


def test_bce_loss_equals_transformers(models):
    """Both losses of transformers' logits: the loss alone is compared, not the models again."""
    _, reference = models
    ids, mask, pixels = batch(torch.device("cpu"))
    labels = vqa_soft_scores([["1", "1", "1"], ["2", "5"], ["0", "6", "6"]], [str(i) for i in range(7)])
    with torch.no_grad():
        theirs = reference(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels)
    torch.testing.assert_close(vqa_bce_loss(theirs.logits, labels), theirs.loss, atol=1e-6, rtol=0)
    assert theirs.loss > 1.0  # soft targets far from random logits: a loss that says something
    with pytest.raises(ValueError, match=r"both be \(questions, answers\), got \(3, 7\) and \(3, 6\)"):
        vqa_bce_loss(torch.zeros(3, 7), labels[:, :6])


def test_round_trip_through_the_transformers_names(models):
    model, _ = models
    copy = load_vilt_state_dict(ViLT(config()), to_vilt_state_dict(model)).state_dict()
    assert all(torch.equal(copy[name], tensor) for name, tensor in model.state_dict().items())


POOLER = "vilt.pooler.dense.weight"


@pytest.mark.parametrize("spoil, message", [
    (lambda state: state.pop(POOLER), rf"missing \(1\): {POOLER}"),
    (lambda state: state.update(extra=torch.zeros(1)), r"unexpected \(1\): extra"),
    (lambda state: state.update({POOLER: torch.zeros(5, 32)}), rf"wrong shape \(1\): {POOLER} \(5, 32\)"),
])
def test_loading_is_strict_and_names_the_bad_tensor(models, spoil, message):
    state = to_vilt_state_dict(models[0])
    spoil(state)
    with pytest.raises(CheckpointMismatch, match=message):
        load_vilt_state_dict(ViLT(config()), state)


def test_bad_inputs_are_refused_with_what_is_accepted(models):
    model, _ = models
    ids, mask, pixels = batch(torch.device("cpu"))
    with pytest.raises(ValueError, match="longer than the model's 16 text positions"):
        model(torch.ones(3, 17, dtype=torch.long), torch.ones(3, 17), pixels)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 50\), got \[0, 50\]"):
        model(ids.masked_fill(ids == ids.max(), 50), mask, pixels)
    with pytest.raises(ValueError, match="3 questions but 2 images"):
        model(ids, mask, pixels[:2])
    with pytest.raises(ValueError, match=r"pixels of shape \(batch, 3, 32, 32\)"):
        model(ids, mask, pixels[..., :16, :16])
