"""The course's Flamingo: its episodes, its scores on answers whose truth is known, and the
trained parts exported and read back strictly."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from minimodal.convert import CheckpointMismatch, read_weights, write_checkpoint
from minimodal.convert_flamingo import load_trained_parts, trained_parts
from minimodal.flamingo import Flamingo, closed_gates
from minimodal.flamingo_eval import ANSWERS, answer_token, few_shot_scores
from minimodal.flamingo_recipe import (CHECKPOINT, TASKS, FlamingoRecipe, answer, collate, episode, load_history,
                                       load_shapes_flamingo, scene_pool)
from minimodal.llava import IGNORE
from minimodal.lm_recipe import load_shapes_lm


@pytest.fixture(scope="module")
def pool():
    return scene_pool("test", 300)


@pytest.fixture(scope="module")
def trained():
    return load_shapes_flamingo()  # trains and exports it first when build/ does not hold it


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("shots", [0, 3])
def test_an_episode_learns_only_answers_and_asks_the_last(pool, task, shots):
    _, tokenizer = load_shapes_lm()
    e = episode(pool, tokenizer, np.random.default_rng(0), shots, task)
    ids, labels = torch.tensor(e.ids), torch.tensor(e.labels)
    assert int((ids == tokenizer.image_id).sum()) == shots + 1 == len(e.scenes) == len(set(e.scenes))
    if task == "match":   # one colour is "yes" throughout the episode, every other "no"
        pairs = {(pool.scenes[i][0].color, a) for i, a in zip(e.scenes, e.answers)}
        rule = dict(pairs)
        assert len(rule) == len(pairs) and len(set(rule.values())) == len(rule)   # one answer per colour, and back
        truths = [answer(pool.scenes[i], task, next((c for c, a in rule.items() if a == "yes"), None))
                  for i in e.scenes]
    else:
        truths = [answer(pool.scenes[i], task) for i in e.scenes]
    assert truths == e.answers
    assert [tokenizer.decode([t]) for t in labels[labels != IGNORE].tolist()] == [x for a in truths for x in (a, ".")]
    assert e.ids[e.query - 1] == tokenizer.image_id and e.ids[e.query] == answer_token(tokenizer, truths[-1])
    assert all(t in ANSWERS[task] for t in truths)


def test_match_episodes_use_two_colours_with_even_odds(pool):
    _, tokenizer = load_shapes_lm()
    rng = np.random.default_rng(2)
    episodes = [episode(pool, tokenizer, rng, 4, "match") for _ in range(200)]
    assert all(len({pool.scenes[i][0].color for i in e.scenes}) <= 2 for e in episodes)
    yes = np.mean([a == "yes" for e in episodes for a in e.answers])
    assert 0.45 < yes < 0.55


def test_a_spliced_episode_has_a_run_of_image_tokens_per_image(pool):
    _, tokenizer = load_shapes_lm()
    e = episode(pool, tokenizer, np.random.default_rng(1), 2, "count", image_tokens=4)
    assert int((torch.tensor(e.ids) == tokenizer.image_id).sum()) == 12
    assert e.ids[e.query - 4:e.query] == [tokenizer.image_id] * 4


def test_bad_requests_are_refused(pool):
    with pytest.raises(ValueError, match="scenes of one shape"):
        answer(next(s for s in pool.scenes if len(s) == 2), "color")
    with pytest.raises(ValueError, match="must be a square"):
        FlamingoRecipe(connector="projector", visual_tokens=8)
    with pytest.raises(ValueError, match="connector must be one of"):
        FlamingoRecipe(connector="mlp")


class Oracle(torch.nn.Module):
    """Predicts, after every <|image|>, the answer of a fixed table: right ``right`` of the time."""

    def __init__(self, pool, tokenizer, task, right_every: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.tokenizer, self.right_every = tokenizer, right_every
        self.wrong = answer_token(tokenizer, ANSWERS[task][0]), answer_token(tokenizer, ANSWERS[task][1])

    def forward(self, ids, features):
        logits = torch.zeros(*ids.shape, self.tokenizer.vocab_size)
        nxt = torch.roll(ids, -1, dims=1)                                     # the token that follows
        for b in range(len(ids)):
            for t in range(ids.shape[1] - 1):
                right = b % self.right_every == 0
                token = nxt[b, t] if right else self.wrong[int(nxt[b, t] == self.wrong[0])]
                logits[b, t, token] = 1.0
        return logits


@pytest.mark.parametrize("right_every,expected", [(1, 1.0), (4, 0.25)])
def test_scores_count_right_and_on_task_answers(pool, right_every, expected):
    _, tokenizer = load_shapes_lm()
    scores = few_shot_scores(Oracle(pool, tokenizer, "count", right_every), tokenizer, pool, 2, "count",
                             episodes=40, batch_size=40)
    assert scores.right == pytest.approx(expected) and scores.on_task == 1.0


def test_the_trained_parts_reload_equal_and_strictly(trained, pool, tmp_path):
    model, tokenizer = trained
    assert isinstance(model, Flamingo)
    assert json.loads((CHECKPOINT / "recipe.json").read_text()) == asdict(FlamingoRecipe())
    state = read_weights(CHECKPOINT)
    assert set(state) == set(trained_parts(model)) and not any(k.startswith("language_model.") for k in state)
    history = load_history()
    assert len(history["loss"]) == FlamingoRecipe().steps and np.mean(history["loss"][-50:]) < 1.0
    assert history["evals"][0]["gates"] != [[0.0, 0.0]] * 3
    del state["gated.1.attn_gate"]
    write_checkpoint(tmp_path, {}, state)
    with pytest.raises(CheckpointMismatch, match=r"missing \(1\): gated\.1\.attn_gate"):
        load_trained_parts(model, tmp_path)


@torch.no_grad()
def test_the_trained_model_reads_its_examples_and_sees(trained, pool):
    model, tokenizer = trained
    for task in TASKS:
        assert few_shot_scores(model, tokenizer, pool, 2, task, episodes=100).on_task >= 0.9
    e = [episode(pool, tokenizer, np.random.default_rng(5), 2, t) for t in TASKS]
    ids, _, features = collate(pool, e, tokenizer.pad_id, "cpu")
    with closed_gates(model):
        assert torch.equal(model(ids, features=features), model.language_model(ids))
    assert not torch.equal(model(ids, features=features), model.language_model(ids))
