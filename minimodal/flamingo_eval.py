"""Judging the course's Flamingo: few-shot accuracy by number of examples, and with its gates shut.

An answer is right when the model's most likely next token, at the place where the
query's answer begins, is that answer's token. It is *on task* when that token is one
of the task's possible answers (a count for a count, a colour for a colour), whether
or not it is the right one: with no examples the model must guess which task it is
given, and on-task shows how far the examples tell it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from minimodal.data.shapes import COLORS, SHAPES
from minimodal.flamingo import Flamingo, closed_gates
from minimodal.flamingo_recipe import (CONNECTORS, TASKS, FlamingoRecipe, Pool, collate, episode,
                                       image_tokens_in_text, train_shapes_flamingo)
from minimodal.llava import LLaVA
from minimodal.lm_tokenizer import LMTokenizer

ANSWERS = {"count": ("1", "2", "3", "4"), "color": tuple(COLORS), "shape": SHAPES, "match": ("yes", "no")}


def answer_token(tokenizer: LMTokenizer, word: str) -> int:
    """The one token an answer is: what the model must predict right after the image."""
    ids = tokenizer.encode(word)
    if len(ids) != 1:
        raise ValueError(f"the answer {word!r} is {len(ids)} tokens; the scores assume one")
    return ids[0]


@dataclass
class Scores:
    right: float      # the answer's token predicted
    on_task: float    # some answer of the task predicted


@torch.no_grad()
def few_shot_scores(model: Flamingo | LLaVA, tokenizer: LMTokenizer, pool: Pool, shots: int, task: str,
                    episodes: int = 200, seed: int = 0, batch_size: int = 100) -> Scores:
    """Accuracy on ``episodes`` queries of ``task`` with ``shots`` examples each, drawn from ``seed``."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    rng = np.random.default_rng([seed, shots, TASKS.index(task)])
    device = next(model.parameters()).device
    options = torch.tensor([answer_token(tokenizer, w) for w in ANSWERS[task]], device=device)
    right = on_task = 0
    for start in range(0, episodes, batch_size):
        drawn = [episode(pool, tokenizer, rng, shots, task, image_tokens_in_text(model))
                 for _ in range(min(batch_size, episodes - start))]
        ids, _, features = collate(pool, drawn, tokenizer.pad_id, device)
        logits = (model(ids, features=features.flatten(0, 1)) if isinstance(model, LLaVA)
                  else model(ids, features=features))                                    # (B, T, V)
        rows = torch.arange(len(drawn), device=device)
        predicted = logits[rows, torch.tensor([e.query - 1 for e in drawn], device=device)].argmax(-1)
        truth = ids[rows, torch.tensor([e.query for e in drawn], device=device)]
        right += int((predicted == truth).sum())
        on_task += int(torch.isin(predicted, options).sum())
    return Scores(right / episodes, on_task / episodes)


def few_shot_table(model: Flamingo | LLaVA, tokenizer: LMTokenizer, pool: Pool,
                   shots: tuple[int, ...] = (0, 1, 2, 4), seeds: tuple[int, ...] = (0, 1, 2),
                   episodes: int = 200) -> dict[tuple[int, str], list[Scores]]:
    """{(shots, task): [scores of each seed]}, every task's queries drawn afresh for each seed."""
    return {(k, task): [few_shot_scores(model, tokenizer, pool, k, task, episodes, seed) for seed in seeds]
            for k in shots for task in TASKS}


def closed_gate_scores(model: Flamingo, tokenizer: LMTokenizer, pool: Pool, shots: int = 2,
                       episodes: int = 200) -> dict[str, Scores]:
    """Each task's scores with every gate forced to 0: the frozen language model, image-blind."""
    with closed_gates(model):
        return {task: few_shot_scores(model, tokenizer, pool, shots, task, episodes) for task in TASKS}


def connector_sweep(pool: Pool, tokens: tuple[int, ...] = (1, 4, 16), connectors: tuple[str, ...] = CONNECTORS,
                    steps: int = 300, shots: int = 2, episodes: int = 200, progress=None
                    ) -> dict[tuple[str, int], dict[str, float]]:
    """{(connector, visual tokens per image): {task: accuracy}}, each model trained ``steps`` steps
    from the same frozen parts on the same episodes, and asked the same queries with ``shots`` examples."""
    results = {}
    for connector in connectors:
        for n in tokens:
            recipe = FlamingoRecipe(connector=connector, visual_tokens=n, steps=steps)
            model, tokenizer, _ = train_shapes_flamingo(recipe, progress=False)
            results[connector, n] = {task: few_shot_scores(model, tokenizer, pool, shots, task, episodes).right
                                     for task in TASKS}
            if progress is not None:
                progress(connector, n, results[connector, n])
    return results
