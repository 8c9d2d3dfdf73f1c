"""The course's BLIP and its probes: batches with twins and no false negatives, probes that
are false and in CLIP's words, re-ranking, and the trained model exported and read back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minimodal.blip_eval import (Candidates, ProbeSet, candidates, colour_swap, count_change, order_table,
                                 probe_set, ranked, relation_swap, reranked)
from minimodal.blip_recipe import (BlipRecipe, caption_pool, draw_batch, encode_captions, load_shapes_blip,
                                   match_probability, twin_key)
from minimodal.blip_recipe import CHECKPOINT
from minimodal.convert import CheckpointMismatch, read_weights
from minimodal.convert_blip import load_blip_state_dict
from minimodal.data.shapes import Shape, caption
from minimodal.pretrained import Recipe as ClipRecipe
from minimodal.pretrained import shapes_world
from minimodal.vilt_recipe import resized_pixels
from minimodal.vocab import caption_words


def shape(name, color, row, col):
    return Shape(shape=name, color=color, size="small", row=row, col=col, x=(col + 0.5) / 3,
                 y=(row + 0.5) / 3, radius=0.09)


@pytest.fixture(scope="module")
def pool():
    return caption_pool(BlipRecipe())


def facts(scene):
    """What a scene holds, written independently of the caption grammar: shape, colour and cell of each."""
    return sorted((s.shape, s.color, s.row, s.col) for s in scene)


def test_a_batch_pairs_scenes_with_twins_and_no_caption_fits_another_image(pool):
    rows, texts = draw_batch(pool, np.random.default_rng(3), 32)
    assert len(rows) == len(texts) == 32 and len(set(rows)) == 32
    keys = [twin_key(pool.scenes[i]) for i in rows]
    twins = sum(keys[i] == keys[i + 1] for i in range(0, 32, 2))
    assert twins >= 9                                      # most of the 16 random scenes found a twin (measured 11-14)
    assert all(text in pool.options[i] for i, text in zip(rows, texts))
    # No caption is one the grammar writes for another image of the batch, in any phrasing.
    for i, text in zip(rows, texts):
        assert all(text not in pool.options[j] for j in rows if j != i), text


def test_captions_are_read_between_bos_and_eos(pool):
    ids, mask = encode_captions(pool.vocab, ["a red circle", "two blue squares left of a red circle"])
    assert ids[0, 0] == ids[1, 0] == pool.vocab.bos
    assert mask.sum(dim=1).tolist() == [5, 10]            # 3 and 8 words, <bos> and <eos>
    assert ids[0, 4] == pool.vocab.eos and ids[0, 5:].eq(0).all()


def test_the_probes_change_one_thing_each():
    a, b = shape("circle", "red", 0, 0), shape("square", "blue", 0, 2)
    assert caption((a, b)) == "a red circle left of a blue square"
    assert colour_swap((a, b)) == "a blue circle left of a red square"
    assert relation_swap((a, b)) == "a blue square left of a red circle"
    assert count_change((a, b)) == "two red circles left of a blue square"
    assert count_change((a, shape("circle", "red", 1, 0))) == "a red circle"
    assert colour_swap((a, shape("square", "red", 1, 1))) is None      # same colour: nothing to swap
    with pytest.raises(ValueError, match="3 red circles"):
        count_change((a, shape("circle", "red", 1, 0), shape("circle", "red", 2, 0)))


def test_probe_captions_use_only_words_the_course_clip_read():
    clip_world = shapes_world(max_shapes=ClipRecipe().max_shapes)
    seen = {w for c in clip_world.sample("train", 4000).captions for w in caption_words(c)}
    probes = probe_set(shapes_world(max_shapes=2), 200)
    used = {w for texts in [probes.true, *probes.wrong.values()] for t in texts if t for w in caption_words(t)}
    assert used <= seen, used - seen
    assert "below" not in seen and "three" not in seen


def hand_candidates():
    probes = ProbeSet(scenes=[], images=torch.zeros(2, 3, 64, 64), true=["t0", "t1"],
                      wrong={"colour swap": ["c0", None], "relation swap": ["r0", "r1"], "count change": ["n0", "n1"]})
    return probes, Candidates(texts=[["t0", "c0", "r0", "n0", "x"], ["t1", "r1", "n1", "y"]],
                              slot=[{"colour swap": 1, "relation swap": 2, "count change": 3},
                                    {"relation swap": 1, "count change": 2}])


def test_reranking_reorders_only_the_top_k():
    first = [torch.tensor([0.9, 0.8, 0.1, 0.7, 0.0])]
    second = [torch.tensor([0.1, 0.9, 0.0, 0.5, 1.0])]
    assert reranked(first, second, 2)[0].tolist() == [1, 0, 3, 2, 4]
    assert reranked(first, second, 3)[0].tolist() == [1, 3, 0, 2, 4]
    assert reranked(first, second, 5)[0].tolist() == ranked(second)[0].tolist() == [4, 1, 3, 0, 2]


def test_the_order_table_counts_wins_per_probe():
    _, pool = hand_candidates()
    orders = [torch.tensor([1, 0, 2, 3, 4]), torch.tensor([0, 2, 1, 3])]
    table = order_table(orders, pool)
    assert table == {"R@1": 0.5, "colour swap": 0.0, "relation swap": 1.0, "count change": 1.0}


def test_candidates_hold_the_probes_and_only_false_distractors():
    probes = probe_set(shapes_world(max_shapes=2), 60)
    pool = candidates(probes, 6)
    for i, (texts, slot) in enumerate(zip(pool.texts, pool.slot)):
        assert texts[0] == probes.true[i] and len(texts) == len(set(texts)) == 1 + len(slot) + 6
        assert all(texts[slot[name]] == probes.wrong[name][i] for name in slot)
        for other in texts[1 + len(slot):]:
            j = probes.true.index(other)
            assert facts(probes.scenes[j]) != facts(probes.scenes[i])


@pytest.fixture(scope="module")
def trained():
    return load_shapes_blip()   # trains and exports it first when build/ does not hold it


def test_the_trained_blip_reloads_strictly(trained):
    model, vocab = trained
    state = read_weights(CHECKPOINT)
    again = load_blip_state_dict(type(model)(model.config), state)
    for (name, ours), theirs in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(ours, theirs), name
    key = next(k for k in state if "itm_head" in k)
    with pytest.raises(CheckpointMismatch, match="itm_head"):
        load_blip_state_dict(type(model)(model.config), {k: v for k, v in state.items() if k != key})


@pytest.mark.parametrize("probe, floor", [("count change", 0.95), ("colour swap", 0.8), ("relation swap", 0.58)])
def test_the_trained_matching_head_tells_a_caption_from_its_twin(trained, probe, floor):
    """Measured: 100% on count changes, 93% on colour swaps, 66.5% on relation swaps (chance 50%).

    Relation swaps were at chance (53%) before the image positions started at 2; lesson 10
    has the probe table and the 90% target, not reached.
    """
    model, vocab = trained
    probes = probe_set(shapes_world(max_shapes=2), 300)
    rows = [i for i, t in enumerate(probes.wrong[probe]) if t is not None]
    pixels = resized_pixels(probes.images[rows], BlipRecipe().image_size)
    right = match_probability(model, vocab, pixels, [probes.true[i] for i in rows])
    wrong = match_probability(model, vocab, pixels, [probes.wrong[probe][i] for i in rows])
    assert len(rows) > 80
    assert (right > wrong).float().mean() >= floor
