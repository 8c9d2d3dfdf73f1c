"""Writing with a language model: prefill the prompt, then one token at a time, with a KV cache.

Each step turns the next-token logits into a choice:

* **greedy** (temperature 0): the most likely token. Deterministic, and prone to loops.
* **temperature** T: sample from softmax(logits / T). T < 1 sharpens the distribution
  toward the likely tokens, T > 1 flattens it toward the unlikely ones.
* **top-k**: sample only among the k most likely tokens.
* **top-p** (nucleus, Holtzman et al., 2019): sample only among the most likely tokens
  whose probabilities add up to p, the token that crosses p included. Unlike top-k the
  number kept adapts: one token when the model is sure, many when it is not.

A batch holds prompts of different lengths, padded on the left so that all of them end
at the last column; a row stops when it writes a stop token, and the others go on.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """(B, V) -> the same with every token outside each row's k best set to -inf."""
    if k < 1:
        raise ValueError(f"top_k must be at least 1, got {k}")
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[..., -1:]   # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """(B, V) -> the same with every token outside each row's nucleus set to -inf.

    The nucleus is the smallest set of most likely tokens whose probability reaches p: a
    token is kept when the probability of the tokens ranked above it is still below p.
    """
    if not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    ranked, order = logits.sort(dim=-1, descending=True)                   # (B, V)
    probs = ranked.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs                                  # mass ranked above each token
    drop = (before >= p).scatter(-1, order, before >= p)                   # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def next_tokens(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, V) logits -> (B,) chosen tokens: greedy at temperature 0, else sampled."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of different lengths -> ids (B, T) and attention mask (B, T), padded on the left."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate needs at least one prompt, and every prompt at least one token "
                         "(a start token, if nothing else)")
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    return ids, mask


@torch.no_grad()
def generate(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int, *,
             stop_tokens: Sequence[int] = (), pad_id: int = 0, temperature: float = 0.0,
             top_k: int | None = None, top_p: float | None = None, use_cache: bool = True,
             seed: int | None = None, prompt_inputs: dict | None = None) -> list[list[int]]:
    """The tokens each prompt is continued with, up to a stop token (not included) or max_new_tokens.

    ``model``: a LanguageModel, or any model with its ``forward(ids, attention_mask, cache)``
    and ``new_cache()`` (LLaVA).

    With ``use_cache`` the prompt is run once (prefill) and each step feeds the new token
    alone; without, each step runs the whole sequence again. Both give the same tokens.
    ``prompt_inputs``: more keyword inputs of the model that belong to the prompt (LLaVA's
    images), given with every pass that reads the prompt: the prefill, or every uncached step.
    """
    device = next(model.parameters()).device
    ids, mask = left_pad(prompts, pad_id, device)
    generator = None if seed is None else torch.Generator(device).manual_seed(seed)
    stops = torch.tensor(list(stop_tokens), device=device, dtype=torch.long)
    cache = model.new_cache() if use_cache else None
    done = torch.zeros(len(ids), dtype=torch.bool, device=device)
    written, feed, extra = [], ids, prompt_inputs or {}
    model.eval()
    for step in range(max_new_tokens):
        reads_prompt = step == 0 or not use_cache
        logits = model(feed, attention_mask=mask, cache=cache, **(extra if reads_prompt else {}))[:, -1]  # (B, V)
        token = next_tokens(logits, temperature, top_k, top_p, generator)            # (B,)
        token = torch.where(done, pad_id, token)
        written.append(token)
        done |= torch.isin(token, stops)
        if done.all():
            break
        ids = torch.cat([ids, token[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        feed = token[:, None] if use_cache else ids
    rows = torch.stack(written, dim=1).tolist() if written else [[] for _ in prompts]
    return [_until_stop(row, set(stop_tokens)) for row in rows]


def _until_stop(row: list[int], stops: set[int]) -> list[int]:
    for i, token in enumerate(row):
        if token in stops:
            return row[:i]
    return row
