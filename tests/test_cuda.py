"""The parity checks again on a CUDA GPU, a bf16 training step per model, and fused attention there.

1. The CPU parity tests themselves (ViT, text tower, CLIP, BERT, attention and blocks, LSTM,
   caption decoders, the language model, LLaVA, Flamingo's pieces, generation), imported into this module: they
   take the ``device`` fixture, which this module overrides with DEVICE, and run there in fp32
   with TF32 off (``minimodal.device.exact_matmul``) and their own tolerances.
2. One step of ``minimodal.train.train`` per model, under its bf16 autocast, lowers the loss
   on the batch it trained on.
3. Every attention layer calls F.scaled_dot_product_attention, and that call is served by a
   fused kernel (flash, memory-efficient or cuDNN attention): the math fallback is turned off.

DEVICE is cuda, or the device named by MINIMODAL_TEST_CUDA_DEVICE: setting it to cpu runs these
checks on the CPU, to check this file on a machine without a GPU. Without a GPU and without
that variable, the whole module is skipped.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import minimodal.transformer as transformer
from clip_reference import SMALL_SHAPES, sample_inputs
from minimodal.bert import SentenceEncoder, SentenceEncoderConfig
from minimodal.caption import Captioner, caption_loss
from minimodal.clip import CLIPConfig
from minimodal.device import autocast, exact_matmul
from minimodal.llava import IGNORE, LLaVA, next_token_loss
from minimodal.lm import LanguageModel, LMConfig
from minimodal.flamingo_recipe import freeze_pretrained
from minimodal.lm_recipe import lm_loss
from minimodal.resampler import ResamplerConfig
from minimodal.text import TextTransformer
from minimodal.train import TrainConfig, train
from minimodal.transformer import MultiHeadAttention
from minimodal.vit import VisionTransformer
from test_caption import (WIDTH, decoder_like, inputs as caption_inputs, lstm_decoder, reference_decoder,
                          small_vision)
from test_clip import inputs as clip_inputs, tiny_clip
from test_flamingo import IMAGE as FLAMINGO_IMAGE, tiny_flamingo
from test_llava import IMAGE, batch as llava_batch, config as llava_config
from test_lm import SHAPES as LM_SHAPES
from test_lstm import twin_lstms

# The CPU parity tests, collected here too; open_clip_model, open_clip_loss and minilm are their fixtures.
from test_caption import (test_beam_width_one_equals_greedy_on_both_decoders,  # noqa: F401
                          test_cached_decoding_equals_uncached_token_for_token,
                          test_cached_steps_give_the_teacher_forced_logits,
                          test_cross_attention_map_equals_torch_attention_weights,
                          test_lstm_steps_equal_the_teacher_forced_run,
                          test_transformer_decoder_equals_torch_with_copied_weights)
from test_convert import (open_clip_model, test_openai_state_dict_loads_and_matches_open_clip,  # noqa: F401
                          test_vit_b32_shape_matches_transformers_clip)
from test_flamingo import (test_at_initialisation_flamingo_is_its_frozen_language_model,  # noqa: F401
                           test_gated_block_matches_idefics_gated_layer, test_qformer_matches_blip2_qformer,
                           test_resampler_matches_idefics_perceiver)
from test_generate import test_greedy_equals_transformers_generate  # noqa: F401
from test_llava import (test_generation_with_images_is_the_same_with_and_without_the_cache,  # noqa: F401
                        test_logits_equal_transformers_llava_with_several_images_and_padding)
from test_lm import (test_a_padded_prompt_gives_what_it_gives_alone,  # noqa: F401
                     test_logits_equal_llama_with_padding,
                     test_the_kv_cache_gives_the_logits_of_the_whole_sequence)
from test_loss import open_clip_loss, test_equals_open_clip_clip_loss, test_gradients_equal_open_clip  # noqa: F401
from test_lstm import (test_full_length_batch_matches_torch,  # noqa: F401
                       test_padded_batch_matches_packed_torch_values_and_gradients)
from test_text import (  # noqa: F401
    test_short_captions_are_cut_at_the_last_end_of_text_and_still_match_transformers,
    test_small_text_encoders_match_transformers)
from test_transformer import (minilm, test_block_matches_torch_transformer_encoder_layer,  # noqa: F401
                              test_cross_attention_takes_keys_and_values_from_the_context,
                              test_minilm_hidden_states_match_transformers_bert,
                              test_minilm_sentence_embeddings_match_sentence_transformers,
                              test_self_attention_with_padding_and_causal_masks_matches_torch)
from test_vit import test_small_vits_match_transformers  # noqa: F401

DEVICE = torch.device(os.environ.get("MINIMODAL_TEST_CUDA_DEVICE", "cuda"))
if DEVICE.type == "cuda" and not torch.cuda.is_available():
    pytest.skip(f"no CUDA device: torch {torch.__version__} sees no GPU "
                "(MINIMODAL_TEST_CUDA_DEVICE=cpu runs these checks on the CPU)", allow_module_level=True)


@pytest.fixture(autouse=True, scope="module")
def true_fp32():
    """TF32 off for the whole module, so that fp32 on the GPU is fp32; the old flags come back after."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    exact_matmul(DEVICE)
    if DEVICE.type == "cuda":
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.fixture
def device() -> torch.device:
    """The imported parity tests run on DEVICE (conftest's device, the CPU, is overridden here)."""
    return DEVICE


# ------------------------------------------------------------------ a training step, and fused attention

def fit(model, batch):
    """Regression of the model's output on a fixed random target: the last tensor of the batch."""
    *inputs, target = batch
    out = model(*inputs)
    return F.mse_loss((out[0] if isinstance(out, tuple) else out).float(), target)


def contrastive(model, batch):
    per_image, per_text = model(*batch)
    labels = torch.arange(len(per_image), device=per_image.device)
    return (F.cross_entropy(per_image.float(), labels) + F.cross_entropy(per_text.float(), labels)) / 2


def llava_next_tokens(model, batch):
    ids, mask, pixels = batch
    labels = ids.masked_fill((mask == 0) | (ids == IMAGE), IGNORE)  # learn the words, not padding or images
    return next_token_loss(model(ids, pixels, attention_mask=mask), labels)


def random(*shape, seed=5):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# Each builder gives (model, loss_fn(model, batch), batch), on the CPU.
TINY_CLIP = CLIPConfig(*SMALL_SHAPES["tiny"])


def vit():
    torch.manual_seed(0)
    return VisionTransformer(TINY_CLIP.vision), fit, (sample_inputs(TINY_CLIP, 4)[0], random(4, 32))


def text_tower():
    torch.manual_seed(0)
    return TextTransformer(TINY_CLIP.text), fit, (sample_inputs(TINY_CLIP, 4)[1], random(4, 32))


def clip():
    return tiny_clip(), contrastive, clip_inputs(4, 4)


def bert():
    """all-MiniLM-L6-v2's shape with random weights, on a padded batch."""
    torch.manual_seed(0)
    ids = torch.randint(1000, 30000, (4, 12))
    mask = (torch.arange(12)[None] < torch.tensor([12, 9, 5, 3])[:, None]).long()
    return SentenceEncoder(SentenceEncoderConfig()), fit, (ids * mask, mask, random(4, 384))


def lstm():
    return twin_lstms()[0], fit, (random(4, 6, 5, seed=6), torch.tensor([6, 1, 4, 3]), random(4, 6, 7))


def captioner(kind):
    def build():
        decoder = decoder_like(reference_decoder()) if kind == "transformer" else lstm_decoder()
        torch.manual_seed(0)
        model = Captioner(small_vision(WIDTH), decoder)
        tokens, _ = caption_inputs(batch=4)
        return model, caption_loss, (torch.rand(4, 3, 16, 16), tokens)
    return build


def language_model():
    torch.manual_seed(0)
    model = LanguageModel(LMConfig(**LM_SHAPES["grouped-query, tied"]))
    return model, lambda m, batch: lm_loss(m, *batch, pad_id=0), (torch.randint(1, 61, (4, 12)),)


def llava():
    """test_llava's model with 3 heads of width 8 in its language model instead of 4 of width 6:
    CUDA's fused kernels take a masked attention only for head widths that are multiples of 8
    (4 in fp32); at 6 the call falls back to the math kernel."""
    config = llava_config()
    torch.manual_seed(0)
    return LLaVA(replace(config, lm=replace(config.lm, heads=3, kv_heads=1))), llava_next_tokens, llava_batch()


def flamingo():
    """A tiny Flamingo with its gates opened a little (at 0 only the gates would get a gradient),
    the pretrained parts frozen as in training; heads of width 8 for the fused kernels."""
    model = tiny_flamingo(ResamplerConfig(width=16, latents=3, heads=2)).train()
    freeze_pretrained(model)
    with torch.no_grad():
        for gated in model.gated:
            gated.attn_gate.fill_(0.5)
            gated.mlp_gate.fill_(0.5)
    ids = torch.tensor([[1, FLAMINGO_IMAGE, 5, 6, FLAMINGO_IMAGE, 7, 8], [1, 9, FLAMINGO_IMAGE, 10, 11, 12, 13]])
    labels = ids.masked_fill(ids == FLAMINGO_IMAGE, IGNORE)
    return model, lambda m, batch: next_token_loss(m(batch[0], batch[1]), batch[2]), (ids, random(2, 2, 3, 16, 16),
                                                                                       labels)


TO_TRAIN = {"ViT": vit, "text tower": text_tower, "CLIP": clip, "BERT": bert, "LSTM": lstm,
            "Transformer captioner": captioner("transformer"), "LSTM captioner": captioner("lstm"),
            "language model": language_model, "LLaVA": llava, "Flamingo": flamingo}
WITH_ATTENTION = [name for name in TO_TRAIN if name != "LSTM"]


def built(name):
    model, loss_fn, batch = TO_TRAIN[name]()
    return model.to(DEVICE), loss_fn, tuple(t.to(DEVICE) for t in batch)


@pytest.mark.parametrize("name", TO_TRAIN)
def test_one_bf16_training_step_lowers_the_loss(name):
    """One step of minimodal.train.train, under its autocast (bf16 on CUDA), on one batch."""
    model, loss_fn, batch = built(name)

    def loss_on_batch():
        with torch.no_grad(), autocast(DEVICE):
            return loss_fn(model, batch).item()

    precision = []

    def recorded(model, batch):
        precision.append((torch.is_autocast_enabled(DEVICE.type), torch.get_autocast_dtype(DEVICE.type)))
        return loss_fn(model, batch)

    before = loss_on_batch()
    history = train(model, recorded, lambda step: batch, TrainConfig(steps=1, lr=1e-3, progress=False),
                    device=DEVICE)
    after = loss_on_batch()
    if DEVICE.type == "cuda":
        assert precision == [(True, torch.bfloat16)], "the training step should run under bf16 autocast"
    assert history.step == [0] and torch.isfinite(torch.tensor(history.loss)).all()
    assert all(p.dtype == torch.float32 for p in model.parameters()), "weights stay fp32 under autocast"
    assert after < before, f"{name}: loss {before:.5f} before the step, {after:.5f} after"


FUSED_KERNELS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]


@pytest.mark.parametrize("precision", ["fp32", "bf16 autocast"])
@pytest.mark.parametrize("name", WITH_ATTENTION)
def test_attention_takes_the_fused_kernel(name, precision, monkeypatch):
    """Every attention layer calls F.scaled_dot_product_attention (fused=True is the default), and
    with the math fallback turned off that call still runs: a fused kernel serves it on DEVICE."""
    model, loss_fn, batch = built(name)
    layers = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    assert layers and all(m.fused for m in layers)
    calls = {"layers": 0, "sdpa": 0, "written out": 0}

    def counted(key, function):
        def wrapper(*args, **kwargs):
            calls[key] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(transformer.F, "scaled_dot_product_attention",
                        counted("sdpa", transformer.F.scaled_dot_product_attention))
    monkeypatch.setattr(transformer, "attention_weights", counted("written out", transformer.attention_weights))
    for layer in layers:
        layer.register_forward_pre_hook(lambda *_: calls.__setitem__("layers", calls["layers"] + 1))
    amp = autocast(DEVICE) if precision == "bf16 autocast" else contextlib.nullcontext()
    with sdpa_kernel(FUSED_KERNELS), amp:  # autocast does nothing on a CPU: fp32 twice there
        loss = loss_fn(model, batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert calls["layers"] >= len(layers) and calls["sdpa"] == calls["layers"] and calls["written out"] == 0, calls
