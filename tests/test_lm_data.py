"""The language model's tokenizer and the shapes world's text: special tokens, phrasings, the parser."""

from __future__ import annotations

import pytest

from minimodal.data.shapes import ShapesConfig, ShapesWorld
from minimodal.data.shapes_text import facts, is_true, parse_caption, phrasings
from minimodal.lm_tokenizer import END, SPECIALS, USER, LMTokenizer, chat_text

WORLD = ShapesWorld(ShapesConfig(min_shapes=1, max_shapes=4))
TEXT = "a red circle above a blue square\nthere is a green triangle\nwhat color is the circle?"


def test_special_tokens_are_single_ids_that_text_cannot_spell(tmp_path):
    tokenizer = LMTokenizer.train(TEXT * 20, vocab_size=300)
    ids = tokenizer.encode(f"{USER}what color is the circle?{END}")
    assert ids[0] == tokenizer.user_id and ids[-1] == tokenizer.end_id
    assert tokenizer.user_id not in tokenizer.encode("<|user")  # a near miss is plain text
    assert tokenizer.decode(ids) == f"{USER}what color is the circle?{END}"
    assert tokenizer.vocab_size == tokenizer.bpe.vocab_size + len(SPECIALS)
    tokenizer.save(tmp_path)
    again = LMTokenizer.load(tmp_path)
    assert again.encode(TEXT) == tokenizer.encode(TEXT) and again.end_id == tokenizer.end_id


def test_a_word_after_a_special_token_is_one_token():
    tokenizer = LMTokenizer.train(chat_text([("what color is the circle?", "red")]) * 50, vocab_size=400)
    assert len(tokenizer.encode("what")) == 1 and len(tokenizer.encode("red")) == 1


def test_chat_template_leaves_the_last_answer_open():
    assert chat_text([("q1", "a1"), ("q2", "")], "ctx.") == "ctx.<|user|>q1<|end|><|assistant|>a1<|end|>" \
                                                               "<|user|>q2<|end|><|assistant|>"


def test_every_phrasing_parses_and_is_true_of_its_scene_only():
    checked = 0
    for i in range(300):
        scene, other = WORLD.scene("train", i), WORLD.scene("train", i + 1)
        for text in phrasings(scene):
            parsed = parse_caption(text)
            assert parsed is not None and is_true(parsed, scene), text
            checked += 1
            if facts(other) != facts(scene) and parse_caption(text) and is_true(parsed, other):
                assert sorted((s.color, s.shape) for s in other) == sorted((s.color, s.shape) for s in scene)
    assert checked > 400


@pytest.mark.parametrize("text", ["a red circle above a red circle", "two red circle", "a orange square",
                                  "an red circle", "a red circle and", "red", "a red circle left of",
                                  "one red circle", "a red circle, a red circle and a blue square"])
def test_non_sentences_do_not_parse(text):
    assert parse_caption(text) is None


def test_a_swapped_relation_is_parsed_but_false():
    scene = next(s for s in (WORLD.scene("train", i) for i in range(500))
                 if len(phrasings(s)) == 3 and len(s) == 2)
    text = phrasings(scene)[0]
    rel = next(r for r in ("left of", "right of", "above", "below") if f" {r} " in text)
    swapped = text.replace(rel, {"left of": "right of", "right of": "left of", "above": "below",
                                 "below": "above"}[rel])
    assert is_true(parse_caption(text), scene) and not is_true(parse_caption(swapped), scene)
