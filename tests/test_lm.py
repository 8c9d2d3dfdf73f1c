"""The LLaMA-style language model against transformers' LlamaForCausalLM, and its pieces alone."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from minimodal.check import randomized
from minimodal.convert import CheckpointMismatch
from minimodal.convert_llama import (llama_config, lm_config_from_llama, load_llama_state_dict, load_lm_checkpoint,
                                     save_lm_checkpoint, to_llama_state_dict)
from minimodal.lm import LanguageModel, LMConfig
from minimodal.norm import RMSNorm
from minimodal.rope import apply_rope, rope_angles
from minimodal.transformer import set_fused_attention

SHAPES = {
    "grouped-query, tied": dict(vocab_size=61, width=48, layers=2, heads=6, kv_heads=2, mlp_width=80),
    "multi-head, untied": dict(vocab_size=37, width=32, layers=3, heads=4, kv_heads=4, mlp_width=64,
                               tie_embeddings=False),
    "multi-query": dict(vocab_size=29, width=32, layers=1, heads=4, kv_heads=1, mlp_width=40, rope_theta=500.0),
}


def reference_of(model: LanguageModel) -> LlamaForCausalLM:
    """LlamaForCausalLM built from its own config class (not from our dict) and given our weights."""
    c = model.config
    reference = LlamaForCausalLM(LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.width, intermediate_size=c.mlp_width,
        num_hidden_layers=c.layers, num_attention_heads=c.heads, num_key_value_heads=c.kv_heads,
        max_position_embeddings=c.max_length, rms_norm_eps=c.norm_eps, tie_word_embeddings=c.tie_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta}, attn_implementation="eager"))
    reference.load_state_dict(to_llama_state_dict(model), strict=True)
    return reference.eval()


def left_padded(vocab_size: int, lengths: list[int], seed: int = 1,
                device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids left-padded with 0 to the longest of ``lengths``, and their mask, moved to ``device``."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(1, vocab_size, (len(lengths), width), generator=generator)
    mask = torch.tensor([[0] * (width - n) + [1] * n for n in lengths])
    return (ids * mask).to(device), mask.to(device)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fused", [True, False])
def test_logits_equal_llama_with_padding(shape, fused, device):
    model = set_fused_attention(randomized(LanguageModel(LMConfig(**SHAPES[shape]))), fused).to(device)
    reference = reference_of(model).to(device)
    ids, mask = left_padded(model.config.vocab_size, [9, 4, 7], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # what transformers' generate passes
    with torch.no_grad():
        ours = model(ids, attention_mask=mask)
        theirs = reference(ids, attention_mask=mask, position_ids=positions).logits
    real = mask.bool()
    assert ours.abs().max() > 1  # random weights give logits far from zero: the check has teeth
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-5)


def test_a_padded_prompt_gives_what_it_gives_alone(device):
    model = randomized(LanguageModel(LMConfig(**SHAPES["grouped-query, tied"]))).to(device)
    ids, mask = left_padded(model.config.vocab_size, [8, 3], device=device)
    with torch.no_grad():
        batched = model(ids, attention_mask=mask)[1, -3:]
        alone = model(ids[1:, -3:])[0]
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_the_kv_cache_gives_the_logits_of_the_whole_sequence(shape, device):
    model = randomized(LanguageModel(LMConfig(**SHAPES[shape]))).to(device)
    ids, mask = left_padded(model.config.vocab_size, [10, 6, 8], device=device)
    with torch.no_grad():
        whole = model(ids, attention_mask=mask)
        cache = model.new_cache()
        steps = [model(ids[:, :5], attention_mask=mask[:, :5], cache=cache)]
        for t in range(5, ids.shape[1]):
            steps.append(model(ids[:, t:t + 1], attention_mask=mask[:, :t + 1], cache=cache))
    assert len(cache) == ids.shape[1]
    real = mask.bool()
    torch.testing.assert_close(torch.cat(steps, dim=1)[real], whole[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_checkpoints_go_both_ways(shape, tmp_path):
    model = randomized(LanguageModel(LMConfig(**SHAPES[shape])))
    ids = torch.randint(0, model.config.vocab_size, (2, 6))
    folder = save_lm_checkpoint(model, tmp_path / "ours")
    reference = LlamaForCausalLM.from_pretrained(folder).eval()
    reference.save_pretrained(tmp_path / "theirs")
    back = load_lm_checkpoint(tmp_path / "theirs").eval()
    assert back.config == model.config
    with torch.no_grad():
        torch.testing.assert_close(reference(ids).logits, model(ids), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(back(ids), model(ids), atol=0, rtol=0)


def test_loading_names_missing_unexpected_and_misshapen_tensors():
    model = randomized(LanguageModel(LMConfig(**SHAPES["multi-head, untied"])))
    state = to_llama_state_dict(model)
    del state["model.layers.2.mlp.up_proj.weight"]
    state["model.layers.0.self_attn.q_proj.bias"] = torch.zeros(32)
    state["model.norm.weight"] = torch.ones(31)
    with pytest.raises(CheckpointMismatch) as error:
        load_llama_state_dict(LanguageModel(model.config), state)
    message = str(error.value)
    for name in ("model.layers.2.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.bias",
                 "model.norm.weight (31,)"):
        assert name in message


def test_a_tied_model_refuses_a_head_that_differs_from_its_embedding():
    model = randomized(LanguageModel(LMConfig(**SHAPES["grouped-query, tied"])))
    state = {k: v.clone() for k, v in to_llama_state_dict(model).items()}
    state["lm_head.weight"] += 1
    with pytest.raises(CheckpointMismatch, match="tie_embeddings=False"):
        load_llama_state_dict(LanguageModel(model.config), state)


def test_config_round_trip_and_refusals():
    config = LMConfig(**SHAPES["multi-query"])
    assert lm_config_from_llama(llama_config(config)) == config
    with pytest.raises(ValueError, match="plain Llama"):
        lm_config_from_llama({**llama_config(config), "attention_bias": True})


def test_rope_scores_depend_only_on_the_distance():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(i: int, j: int) -> float:
        cos, sin = rope_angles(torch.tensor([[i, j]]), 16)
        rq = apply_rope(q, cos[:, :, :1], sin[:, :, :1])
        rk = apply_rope(k, cos[:, :, 1:], sin[:, :, 1:])
        return float((rq * rk).sum())

    assert score(3, 1) == pytest.approx(score(40, 38), abs=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-2)
    assert score(0, 0) == pytest.approx(float((q * k).sum()), abs=1e-5)  # angle zero: unchanged


def test_rmsnorm_matches_its_formula_and_keeps_float32_inside():
    norm = RMSNorm(8, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(3, 8) * 5 + 2
    expected = norm.weight * x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(norm(x), expected)
    assert norm(x.bfloat16()).dtype == torch.float32  # the gain is float32; bf16 comes from autocast


def test_bad_ids_and_masks_are_refused():
    model = LanguageModel(LMConfig(**SHAPES["multi-query"]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 29\)"):
        model(torch.tensor([[1, 29]]))
    with pytest.raises(ValueError, match="attention_mask should be"):
        model(torch.tensor([[1, 2]]), attention_mask=torch.ones(1, 3))
