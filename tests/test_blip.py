"""BLIP's ITM and ITC heads against transformers' BlipForImageTextRetrieval, hard-negative
sampling, the joint loss, strict loading and refused inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import BlipConfig as HFBlipConfig
from transformers import BlipForImageTextRetrieval

from minimodal.blip import Blip, BlipConfig, BlipTextConfig, blip_vision_config
from minimodal.blip_loss import NO_NEGATIVE, hard_negatives, itc_itm_loss, itm_loss
from minimodal.check import randomized
from minimodal.convert import CheckpointMismatch
from minimodal.convert_blip import blip_config, load_blip_state_dict, to_blip_state_dict
from minimodal.loss import clip_loss

VOCAB = 60


def small_config() -> BlipConfig:
    return BlipConfig(vision=blip_vision_config(image_size=32, patch_size=8, width=32, layers=2, heads=4,
                                                mlp_width=64),
                      text=BlipTextConfig(vocab_size=VOCAB, max_length=20, width=32, layers=2, heads=4,
                                          mlp_width=64),
                      embed_dim=16)


def padded_text(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Four captions of lengths 7, 4, 2 and 5, right-padded with id 0."""
    ids = torch.randint(1, VOCAB, (4, 7), generator=generator)
    attention_mask = torch.zeros(4, 7, dtype=torch.long)
    for row, length in enumerate([7, 4, 2, 5]):
        attention_mask[row, :length] = 1
    return ids * attention_mask, attention_mask


@pytest.fixture(scope="module")
def pair():
    """Our model with every parameter randomized, and transformers' loaded from it with strict=True."""
    config = small_config()
    ours = randomized(Blip(config), seed=3)
    theirs = BlipForImageTextRetrieval(HFBlipConfig(**blip_config(config))).eval()
    theirs.load_state_dict(to_blip_state_dict(ours), strict=True)
    return ours, theirs


def inputs(device):
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(4, 3, 32, 32, generator=generator)
    ids, attention_mask = padded_text(generator)
    return pixels.to(device), ids.to(device), attention_mask.to(device)


def test_itm_logits_match_transformers(pair, device):
    ours, theirs = (m.to(device) for m in pair)
    pixels, ids, attention_mask = inputs(device)
    with torch.no_grad():
        mine = ours.itm_logits(ids, attention_mask, ours.image_features(pixels))
        reference = theirs(input_ids=ids, pixel_values=pixels, attention_mask=attention_mask,
                           use_itm_head=True).itm_score
    assert mine.shape == (4, 2)
    torch.testing.assert_close(mine, reference, atol=1e-5, rtol=0)


def test_itc_scores_match_transformers(pair, device):
    ours, theirs = (m.to(device) for m in pair)
    pixels, ids, attention_mask = inputs(device)
    with torch.no_grad():
        mine = ours.itc_similarity(ids, attention_mask, ours.image_features(pixels[:3]))
        reference = theirs(input_ids=ids, pixel_values=pixels[:3], attention_mask=attention_mask,
                           use_itm_head=False).itm_score
    assert mine.shape == (3, 4)       # images by captions
    torch.testing.assert_close(mine, reference, atol=1e-5, rtol=0)


def test_padding_is_ignored(pair):
    """A caption scores the same alone as inside a padded batch: padding keys are masked."""
    ours, _ = pair
    pixels, ids, attention_mask = inputs("cpu")
    with torch.no_grad():
        image = ours.image_features(pixels)
        batch = ours.itm_logits(ids, attention_mask, image)
        alone = ours.itm_logits(ids[1:2, :4], attention_mask[1:2, :4], image[1:2])
    torch.testing.assert_close(batch[1:2], alone, atol=1e-5, rtol=0)


def test_round_trip_and_strict_loading_names_a_missing_tensor(pair):
    ours, theirs = pair
    state = theirs.state_dict()
    copy = load_blip_state_dict(Blip(small_config()), state)
    for name, tensor in ours.state_dict().items():
        torch.testing.assert_close(copy.state_dict()[name], tensor.cpu(), atol=0, rtol=0)
    missing = {k: v for k, v in state.items() if k != "text_encoder.encoder.layer.1.crossattention.self.key.bias"}
    with pytest.raises(CheckpointMismatch, match=r"missing \(1\): text_encoder\.encoder\.layer\.1\."
                                                 r"crossattention\.self\.key\.bias"):
        load_blip_state_dict(Blip(small_config()), missing)
    misshapen = {**state, "itm_head.weight": torch.zeros(3, 32)}
    with pytest.raises(CheckpointMismatch, match=r"wrong shape.*itm_head\.weight \(3, 32\)"):
        load_blip_state_dict(Blip(small_config()), misshapen)


def test_bad_inputs_are_refused_with_a_clear_message(pair):
    ours, _ = pair
    pixels, ids, attention_mask = inputs("cpu")
    image = ours.image_features(pixels)
    with pytest.raises(ValueError, match="4 captions for 2 images"):
        ours.itm_logits(ids, attention_mask, image[:2])
    with pytest.raises(ValueError, match=r"image features \(batch, tokens, 32\)"):
        ours.itm_logits(ids, attention_mask, image[:, 0])
    with pytest.raises(ValueError, match="first token must be real"):
        ours.itc_similarity(ids, attention_mask.flip(1), image)
    with pytest.raises(ValueError, match="one shape"):
        ours.text_embedding(ids, attention_mask[:, :3])
    with pytest.raises(ValueError, match=r"\(batch, 3, 32, 32\)"):
        ours.image_features(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="text encoder post-LN"):
        BlipConfig(vision=small_config().vision, text=BlipTextConfig(vocab_size=9, width=8, layers=1, heads=2,
                                                                    pre_norm=True))


def test_hard_negatives_never_draw_the_positive_and_follow_the_softmax():
    similarity = torch.tensor([[5.0, 4.0, -3.0, -3.0],     # image 0: caption 1 is the near miss
                               [0.0, 9.0, 0.0, 0.0],       # image 1: the wrong captions tie
                               [0.0, 8.0, 3.0, 0.0]])      # image 2: caption 1 dominates the wrong ones
    positives = torch.zeros(3, 4, dtype=torch.bool)
    positives[0, 0] = positives[1, 1] = positives[2, 2] = True
    generator = torch.Generator().manual_seed(0)
    texts, images = zip(*(hard_negatives(similarity, positives, generator) for _ in range(2000)))
    texts, images = torch.stack(texts), torch.stack(images)              # (2000, 3), (2000, 4)
    assert not (texts == torch.tensor([0, 1, 2])).any()                  # a positive is never drawn
    assert not (images[:, :3] == torch.tensor([0, 1, 2])).any()
    wrong = torch.tensor([4.0, -3.0, -3.0]).softmax(0)[0].item()         # caption 1 for image 0
    assert abs((texts[:, 0] == 1).float().mean().item() - wrong) < 0.01
    assert (texts[:, 2] == 1).float().mean() > 0.99                      # one dominant wrong caption
    for caption in (0, 2, 3):                                            # a tie: each about a third
        assert abs((texts[:, 1] == caption).float().mean().item() - 1 / 3) < 0.05
    assert (images[:, 3] >= 0).all()                                     # caption 3, no positive: any image


def test_a_row_of_positives_only_gets_no_negative():
    similarity = torch.randn(2, 3)
    positives = torch.tensor([[True, True, True], [False, True, False]])
    texts, images = hard_negatives(similarity, positives, torch.Generator().manual_seed(0))
    assert texts[0] == NO_NEGATIVE and texts[1] in (0, 2)
    assert images.tolist() == [1, NO_NEGATIVE, 1]   # caption 1 describes both images; 0 and 2 have one wrong one
    with pytest.raises(ValueError, match="boolean mask"):
        hard_negatives(similarity, positives.long())
    with pytest.raises(ValueError, match="one shape"):
        hard_negatives(similarity, positives.T)
    with pytest.raises(ValueError, match="NaN or infinite"):
        hard_negatives(similarity.masked_fill(positives, float("nan")), positives)


def test_itm_loss_on_a_hand_case():
    undecided = torch.zeros(1, 2)
    assert math.isclose(itm_loss(undecided, undecided).item(), math.log(2), rel_tol=1e-6)
    sure_right = itm_loss(torch.tensor([[0.0, 20.0]]), torch.tensor([[20.0, 0.0], [20.0, 0.0]]))
    sure_wrong = itm_loss(torch.tensor([[20.0, 0.0]]), torch.tensor([[0.0, 20.0], [0.0, 20.0]]))
    assert sure_right.item() < 1e-6 and math.isclose(sure_wrong.item(), 20.0, rel_tol=1e-4)
    # one true pair at p(match) = 3/4, one wrong pair at p(no match) = 1/2: mean of -log of each
    loss = itm_loss(torch.tensor([[0.0, math.log(3)]]), torch.zeros(1, 2))
    assert math.isclose(loss.item(), (math.log(4 / 3) + math.log(2)) / 2, rel_tol=1e-6)


def test_joint_loss_is_itc_plus_itm_on_the_drawn_negatives():
    model = randomized(Blip(small_config()), seed=5).train()
    pixels, ids, attention_mask = inputs("cpu")
    losses = itc_itm_loss(model, pixels, ids, attention_mask, temperature=0.5,
                          generator=torch.Generator().manual_seed(7))
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert model.itm_head.weight.grad.abs().sum() > 0 and model.text_proj.weight.grad.abs().sum() > 0
    with torch.no_grad():   # the same draws again, by hand
        image = model.image_features(pixels)
        images, texts = model.itc_embeddings(ids, attention_mask, image)
        wrong_text, wrong_image = hard_negatives(images @ texts.T / 0.5, torch.eye(4, dtype=torch.bool),
                                                 torch.Generator().manual_seed(7))
        right = model.itm_logits(ids, attention_mask, image)
        swapped_text = model.itm_logits(ids[wrong_text], attention_mask[wrong_text], image)
        swapped_image = model.itm_logits(ids, attention_mask, image[wrong_image])
        itm = torch.cat([F.log_softmax(right, -1)[:, 1], F.log_softmax(swapped_text, -1)[:, 0],
                         F.log_softmax(swapped_image, -1)[:, 0]]).mean().neg()
    torch.testing.assert_close(losses["itc"].detach(), clip_loss(images, texts, torch.tensor(2.0)))
    torch.testing.assert_close(losses["itm"].detach(), itm)
    torch.testing.assert_close(losses["loss"].detach(), (losses["itc"] + losses["itm"]).detach())
    with pytest.raises(ValueError, match="B >= 2"):
        itc_itm_loss(model, pixels[:1], ids[:1], attention_mask[:1])
