"""Generation: sampling filters by their definitions, and greedy decoding equal to transformers'."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from minimodal.check import randomized
from minimodal.generate import generate, left_pad, next_tokens, top_k_filter, top_p_filter
from minimodal.lm import LanguageModel, LMConfig
from test_lm import reference_of

CONFIG = LMConfig(vocab_size=40, width=32, layers=2, heads=4, kv_heads=2, mlp_width=48)


def test_top_p_keeps_the_token_that_crosses_p():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = top_p_filter(logits, 0.7).isfinite()[0].tolist()
    assert kept == [True, True, False, False]          # 0.5 < 0.7, so 0.3 joins and crosses it
    assert top_p_filter(logits, 0.5).isfinite()[0].tolist() == [True, False, False, False]
    assert top_p_filter(logits, 1.0).isfinite().all()


def test_top_p_works_in_vocabulary_order_whatever_the_ranking():
    torch.manual_seed(0)
    logits = torch.randn(5, 30)
    for row, kept in zip(logits, top_p_filter(logits, 0.6).isfinite()):
        probs = row.softmax(-1)
        by_hand = [float(probs[probs > probs[i]].sum()) < 0.6 for i in range(30)]
        assert kept.tolist() == by_hand


def test_top_k_and_greedy():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    assert top_k_filter(logits, 2).isfinite()[0].tolist() == [False, True, True, False]
    assert next_tokens(logits).item() == 1
    generator = torch.Generator().manual_seed(0)
    draws = {next_tokens(logits, 1.0, top_k=2, generator=generator).item() for _ in range(50)}
    assert draws == {1, 2}


def test_temperature_sharpens_and_flattens():
    logits = torch.tensor([[2.0, 1.0, 0.0]]).repeat(4000, 1)
    generator = torch.Generator().manual_seed(0)
    cold = (next_tokens(logits, 0.3, generator=generator) == 0).float().mean()
    hot = (next_tokens(logits, 3.0, generator=generator) == 0).float().mean()
    assert cold > 0.9 and hot < 0.5  # softmax at T = 1 gives 0.67 to the first token


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(torch.zeros(1, 3), 0.0)
    with pytest.raises(ValueError, match="temperature"):
        next_tokens(torch.zeros(1, 3), -1.0)
    with pytest.raises(ValueError, match="at least one token"):
        left_pad([[1], []], pad_id=0)


PROMPTS = [[5, 9, 2, 31, 7], [11, 3], [8, 8, 1, 20]]


def greedy_model() -> LanguageModel:
    """A random model whose greedy continuations vary: at scale 0.2 it repeats one token forever."""
    model = randomized(LanguageModel(CONFIG), seed=3)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(0.5)
    return model


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_equals_transformers_generate(use_cache, device):
    model = greedy_model().to(device)
    reference = reference_of(model).to(device)
    ours = generate(model, PROMPTS, 12, pad_id=0, use_cache=use_cache)
    ids, mask = left_pad(PROMPTS, pad_id=0, device=device)
    settings = GenerationConfig(max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=None,
                                use_cache=use_cache)
    theirs = reference.generate(ids, attention_mask=mask, generation_config=settings)[:, ids.shape[1]:]
    assert ours == theirs.tolist()
    assert len({t for row in ours for t in row}) > 3  # not one token repeated


def test_a_row_stops_at_its_stop_token_and_the_others_go_on():
    model = randomized(LanguageModel(CONFIG), seed=3)
    prompts = [[5, 9, 2], [11, 3]]
    free = generate(model, prompts, 8)
    stop = free[0][2]
    stopped = generate(model, prompts, 8, stop_tokens=[stop])
    assert stopped[0] == free[0][:free[0].index(stop)]
    assert stopped[1] == (free[1][:free[1].index(stop)] if stop in free[1] else free[1])


def test_sampling_is_repeatable_from_a_seed_and_cache_does_not_change_it():
    model = randomized(LanguageModel(CONFIG), seed=4)
    prompts = [[1, 2, 3], [4]]
    first = generate(model, prompts, 10, temperature=1.0, top_p=0.9, seed=7)
    assert first == generate(model, prompts, 10, temperature=1.0, top_p=0.9, seed=7, use_cache=False)
    assert first != generate(model, prompts, 10, temperature=1.0, top_p=0.9, seed=8)
