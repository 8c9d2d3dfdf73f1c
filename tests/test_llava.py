"""LLaVA against transformers' LlavaForConditionalGeneration, and its pieces alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPVisionConfig, LlamaConfig
from transformers import LlavaConfig as HFLlavaConfig
from transformers import LlavaForConditionalGeneration

from minimodal.check import randomized
from minimodal.convert import CheckpointMismatch
from minimodal.convert_llava import (llava_config_from_hf, llava_hf_config, load_llava_checkpoint,
                                     load_llava_state_dict, save_llava_checkpoint, to_llava_state_dict)
from minimodal.generate import generate
from minimodal.llava import IGNORE, LLaVA, LlavaConfig, chat_labels, expand_image_tokens, splice_images
from minimodal.lm import LMConfig
from minimodal.vit import VisionConfig

IMAGE = 7


def config(**changes) -> LlavaConfig:
    """A 16-pixel image of 16 patches, a two-block grouped-query Llama of 50 tokens."""
    return LlavaConfig(vision=VisionConfig(image_size=16, patch_size=4, width=16, layers=3, heads=2,
                                           embed_dim=None),
                       lm=LMConfig(vocab_size=50, width=24, mlp_width=40, layers=2, heads=4, kv_heads=2),
                       image_token_id=IMAGE, **changes)


def reference_of(model: LLaVA) -> LlavaForConditionalGeneration:
    """transformers' LLaVA built from its own config classes (not from our dict), given our weights."""
    v, t = model.config.vision, model.config.lm
    reference = LlavaForConditionalGeneration(HFLlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=v.width, intermediate_size=v.mlp_width,
                                       num_hidden_layers=v.layers, num_attention_heads=v.heads,
                                       image_size=v.image_size, patch_size=v.patch_size, hidden_act=v.activation),
        text_config=LlamaConfig(vocab_size=t.vocab_size, hidden_size=t.width, intermediate_size=t.mlp_width,
                                num_hidden_layers=t.layers, num_attention_heads=t.heads,
                                num_key_value_heads=t.kv_heads, rms_norm_eps=t.norm_eps),
        image_token_index=IMAGE, vision_feature_layer=-2, vision_feature_select_strategy="default",
        projector_hidden_act="gelu", image_seq_length=model.config.image_tokens))
    reference.load_state_dict(to_llava_state_dict(model), strict=True)
    return reference.eval()


def batch(tokens: int = 16, seed: int = 1,
          device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two rows of ids: the first holds two images, the second one image and left padding; 3 images' pixels.
    Drawn on the CPU, moved to ``device``."""
    generator = torch.Generator().manual_seed(seed)
    words = torch.randint(8, 50, (40,), generator=generator).tolist()
    first = expand_image_tokens([1, *words[:2], IMAGE, words[2], IMAGE, words[3]], IMAGE, tokens)
    second = expand_image_tokens([1, IMAGE, *words[4:9]], IMAGE, tokens)
    padding = len(first) - len(second)
    ids = torch.tensor([first, [0] * padding + second])
    mask = torch.tensor([[1] * len(first), [0] * padding + [1] * len(second)])
    return ids.to(device), mask.to(device), torch.randn(3, 3, 16, 16, generator=generator).to(device)


def test_logits_equal_transformers_llava_with_several_images_and_padding(device):
    model = randomized(LLaVA(config())).to(device)
    ids, mask, pixels = batch(device=device)
    reference = reference_of(model).to(device)
    expected = reference(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits
    real = mask.bool()
    torch.testing.assert_close(model(ids, pixels, attention_mask=mask)[real], expected[real], atol=1e-5, rtol=0)


def test_the_image_changes_the_logits_of_the_text_after_it_only():
    model = randomized(LLaVA(config()))
    ids, mask, pixels = batch()
    other = pixels.clone()
    other[2] = torch.randn(3, 16, 16)                           # the second row's only image
    before, after = model(ids, pixels, attention_mask=mask), model(ids, other, attention_mask=mask)
    torch.testing.assert_close(before[0], after[0])
    first_image = int((ids[1] == IMAGE).nonzero()[0])
    torch.testing.assert_close(before[1, :first_image], after[1, :first_image])
    assert (before[1, -1] - after[1, -1]).abs().max() > 1e-3


def test_splice_fills_the_runs_in_reading_order_and_refuses_a_mismatch():
    ids = torch.tensor([[1, IMAGE, IMAGE, 2, IMAGE, IMAGE], [IMAGE, IMAGE, 3, 4, 5, 6]])
    embeddings = torch.zeros(2, 6, 4)
    images = torch.arange(3.0)[:, None, None].expand(3, 2, 4) + 1              # image i is all i + 1
    spliced = splice_images(embeddings, ids, IMAGE, images)
    assert spliced[..., 0].tolist() == [[0, 1, 1, 0, 2, 2], [3, 3, 0, 0, 0, 0]]
    with pytest.raises(ValueError, match="6 image placeholders.*2 image"):
        splice_images(embeddings, ids, IMAGE, images[:2])
    with pytest.raises(ValueError, match="width 4"):
        splice_images(embeddings, ids, IMAGE, torch.zeros(3, 1, 8))
    model = randomized(LLaVA(config()))
    with pytest.raises(ValueError, match="no pixels"):
        model(torch.tensor([[1, IMAGE]]))


def test_chat_labels_learn_answers_and_their_end_only():
    user, assistant, end, pad = 40, 41, 42, 0
    ids = torch.tensor([[1, IMAGE, user, 5, end, assistant, 6, 9, end, user, 8, end, assistant, 4, end, pad]])
    labels = chat_labels(ids, assistant, end)[0].tolist()
    learned = [i for i, label in enumerate(labels) if label != IGNORE]
    assert learned == [6, 7, 8, 13, 14]
    assert [labels[i] for i in learned] == [6, 9, end, 4, end]


def test_pooled_image_tokens_are_averages_of_patch_features():
    model = randomized(LLaVA(config(tokens_per_side=2)))
    features = torch.randn(3, 16, 16)                                          # a 4 x 4 grid of patches
    grid = features.reshape(3, 4, 4, 16)
    top_left = grid[:, :2, :2].mean(dim=(1, 2))                                # (3, 16)
    torch.testing.assert_close(model.image_tokens(features)[:, 0], model.projector(top_left))
    assert model.config.image_tokens == 4
    with pytest.raises(ValueError, match="one token per patch"):
        llava_hf_config(model.config)


def test_generation_with_images_is_the_same_with_and_without_the_cache(device):
    model = randomized(LLaVA(config())).to(device)
    ids, mask, pixels = batch(device=device)
    prompts = [row[row_mask.bool()].tolist() for row, row_mask in zip(ids, mask)]
    runs = [generate(model, prompts, 6, prompt_inputs={"pixels": pixels}, use_cache=use_cache)
            for use_cache in (True, False)]
    assert runs[0] == runs[1] and all(len(r) == 6 for r in runs[0])


def test_checkpoints_go_both_ways_and_loading_is_strict(tmp_path):
    model = randomized(LLaVA(config()))
    save_llava_checkpoint(model, tmp_path)
    back = load_llava_checkpoint(tmp_path)
    ids, mask, pixels = batch()
    torch.testing.assert_close(back(ids, pixels, attention_mask=mask), model(ids, pixels, attention_mask=mask))
    assert back.language_model.lm_head.weight is back.language_model.token_embedding.weight
    from_hf = LlavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    real = mask.bool()
    torch.testing.assert_close(from_hf(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits[real],
                               model(ids, pixels, attention_mask=mask)[real], atol=1e-5, rtol=0)
    state = to_llava_state_dict(model)
    for broken, named in [({k: v for k, v in state.items() if "linear_2.bias" not in k}, "linear_2.bias"),
                          ({**state, "model.extra.weight": torch.zeros(1)}, "model.extra.weight"),
                          ({**state, "model.multi_modal_projector.linear_1.weight": torch.zeros(3, 3)},
                           "linear_1.weight")]:
        with pytest.raises(CheckpointMismatch, match=named):
            load_llava_state_dict(LLaVA(config()), broken)
    untied = {**state, "lm_head.weight": state["lm_head.weight"] + 1}
    with pytest.raises(CheckpointMismatch, match="tie"):
        load_llava_state_dict(LLaVA(config()), untied)


def test_config_round_trip_and_refusals():
    cfg = config()
    back = llava_config_from_hf(llava_hf_config(cfg))
    assert back.vision == cfg.vision and back.lm == cfg.lm and back.image_token_id == IMAGE
    with pytest.raises(ValueError, match="embed_dim=None"):
        LlavaConfig(vision=VisionConfig(image_size=16, patch_size=4, width=16, layers=1, heads=2),
                    lm=cfg.lm, image_token_id=IMAGE)
    with pytest.raises(ValueError, match="vocabulary"):
        LlavaConfig(vision=cfg.vision, lm=cfg.lm, image_token_id=50)
    with pytest.raises(ValueError, match="LLaVA-1.5"):
        llava_config_from_hf({**llava_hf_config(cfg), "vision_feature_select_strategy": "full"})


def test_gradients_reach_the_projector_through_a_frozen_language_model():
    model = randomized(LLaVA(config()))
    model.language_model.requires_grad_(False)
    model.vision_tower.requires_grad_(False)
    ids, mask, pixels = batch()
    logits = model(ids, pixels, attention_mask=mask)
    F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.projector.parameters())
    assert all(p.grad is None for p in model.language_model.parameters())
