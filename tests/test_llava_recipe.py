"""The course's trained LLaVA: rebuilt on demand, exported in transformers' format, answering
exactly what LlavaForConditionalGeneration.generate answers with its weights; its training data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import LlavaForConditionalGeneration

from minimodal.data.transforms import normalize
from minimodal.generate import generate, left_pad
from minimodal.llava import IGNORE
from minimodal.llava_eval import answer, question_prompt
from minimodal.llava_recipe import (CHECKPOINT, LlavaRecipe, caption_example, chat_example, is_current,
                                    load_shapes_llava, patch_features, shapes_world)
from minimodal.lm_recipe import load_shapes_lm


@pytest.fixture(scope="module")
def trained():
    return load_shapes_llava()  # trains and exports it first when build/ does not hold it


def test_the_export_is_the_current_recipe_and_answers_with_one_word(trained):
    model, tokenizer = trained
    assert is_current(CHECKPOINT)
    assert json.loads((CHECKPOINT / "recipe.json").read_text())["tune_steps"] == LlavaRecipe().tune_steps
    batch = shapes_world().sample("test", 8)
    said = answer(model, tokenizer, patch_features(model, batch.images), ["how many shapes are there?"] * 8)
    assert all(text in {"1", "2", "3", "4"} for text in said)


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_answers_equal_transformers_on_the_trained_model(trained, use_cache):
    model, tokenizer = trained
    reference = LlavaForConditionalGeneration.from_pretrained(CHECKPOINT).eval()
    batch = shapes_world().sample("test", 6)
    questions = [qa.question for qas in batch.questions for qa in qas[:2]]
    pixels = normalize(batch.images[[i for i in range(6) for _ in range(2)]])
    prompts = [question_prompt(tokenizer, q, model.config.image_tokens) for q in questions]
    ours = generate(model, prompts, 5, pad_id=tokenizer.pad_id, use_cache=use_cache, prompt_inputs={"pixels": pixels})
    ids, mask = left_pad(prompts, tokenizer.pad_id)
    theirs = reference.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=5,
                                do_sample=False, pad_token_id=tokenizer.pad_id, eos_token_id=None,
                                use_cache=use_cache)[:, ids.shape[1]:]
    assert ours == theirs.tolist()
    assert all(row[1] == tokenizer.end_id for row in ours)  # one word, then the end of the turn


def test_training_examples_learn_the_caption_or_the_answers_only():
    _, tokenizer = load_shapes_lm()
    scene = shapes_world().scene("train", 3)
    ids, labels = caption_example(tokenizer, scene, np.random.default_rng(0), 64)
    assert ids.count(tokenizer.image_id) == 64 and len(ids) == len(labels)
    learned = [i for i, label in zip(ids, labels) if label != IGNORE]
    assert tokenizer.decode(learned).startswith(" ") and learned[-1] == tokenizer.eos_id
    assert tokenizer.image_id not in learned and " caption" not in tokenizer.decode(learned)
    ids, labels = chat_example(tokenizer, scene, np.random.default_rng(0), 64, (0, 3, 0), turns=3)
    learned = torch.tensor([label for label in labels if label != IGNORE])
    assert (learned == tokenizer.end_id).sum() == 3                       # each answer's end
    assert tokenizer.user_id not in learned and tokenizer.assistant_id not in learned
    assert not any((s.color, s.shape) == ("red", "triangle") for i in range(3000)
                   for s in shapes_world().scene("train", i))


def test_a_missing_checkpoint_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m minimodal.llava_recipe"):
        load_shapes_llava(tmp_path / "nothing", train_if_missing=False)
