"""Judging the course's language model: loss against baselines, and what it writes.

A loss means little alone, so it is set against two floors: the uniform rate, ln V,
which knows nothing, and a bigram model, which knows which token tends to follow which
but reads no further back. Beating the bigram is what attention over the whole prefix
buys. What the model writes is then judged by the shapes world's grammar: is a sampled
caption a sentence of this world, and is it true of the scene whose facts it was given?
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from minimodal.data.shapes_text import facts, is_true, parse_caption
from minimodal.generate import generate
from minimodal.lm import LanguageModel
from minimodal.lm_tokenizer import BOS, LMTokenizer


@torch.no_grad()
def held_out_loss(model: LanguageModel, ids: torch.Tensor, pad_id: int, batch_size: int = 256) -> float:
    """Mean next-token cross-entropy (nats) over the real tokens of right-padded documents (N, T)."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(ids), batch_size):
        batch = ids[start:start + batch_size].to(device)
        logits = model(batch[:, :-1])                                              # (B, T-1, V)
        targets = batch[:, 1:]
        total += F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=pad_id,
                                 reduction="sum").item()
        count += int((targets != pad_id).sum())
    return total / count


def bigram_loss(train: torch.Tensor, test: torch.Tensor, pad_id: int, vocab_size: int) -> float:
    """The same cross-entropy for a bigram model counted on ``train`` (add-one smoothing)."""
    counts = torch.ones(vocab_size, vocab_size)

    def pairs(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        previous, following = ids[:, :-1].flatten(), ids[:, 1:].flatten()
        real = following != pad_id
        return previous[real], following[real]

    previous, following = pairs(train)
    counts.index_put_((previous, following), torch.ones(len(previous)), accumulate=True)
    log_probs = (counts / counts.sum(dim=1, keepdim=True)).log()
    previous, following = pairs(test)
    return -log_probs[previous, following].mean().item()


def uniform_loss(vocab_size: int) -> float:
    return math.log(vocab_size)


def caption_prompt(tokenizer: LMTokenizer, scene) -> list[int]:
    """The prefix a caption is asked for with: the scene's facts, then 'caption:'."""
    return tokenizer.encode(f"{BOS}scene: {facts(scene)}. caption:")


def judge_captions(model: LanguageModel, tokenizer: LMTokenizer, scenes: list, *, temperature: float = 0.0,
                   top_p: float | None = None, seed: int = 0, max_new_tokens: int = 24) -> dict[str, float]:
    """Sample a caption for each scene from its facts; the fractions that parse and that are true."""
    prompts = [caption_prompt(tokenizer, scene) for scene in scenes]
    written = generate(model, prompts, max_new_tokens, stop_tokens=[tokenizer.eos_id], pad_id=tokenizer.pad_id,
                       temperature=temperature, top_p=top_p, seed=seed)
    parsed = [parse_caption(tokenizer.decode(ids)) for ids in written]
    valid = [p is not None for p in parsed]
    true = [p is not None and is_true(p, scene) for p, scene in zip(parsed, scenes)]
    return {"valid": sum(valid) / len(scenes), "true": sum(true) / len(scenes)}
