"""The course's trained language model: rebuilt on demand, exported in transformers' format,
and generating exactly what LlamaForCausalLM.generate does with its weights."""

from __future__ import annotations

import json

import pytest
from transformers import GenerationConfig, LlamaForCausalLM

from minimodal.data.shapes_text import facts
from minimodal.generate import generate, left_pad
from minimodal.lm_recipe import CHECKPOINT, LMRecipe, document, is_current, load_shapes_lm, shapes_world
from minimodal.lm_tokenizer import LMTokenizer


@pytest.fixture(scope="module")
def trained():
    return load_shapes_lm()  # trains and exports it first when build/ does not hold it


def test_the_export_is_the_current_recipe_with_its_tokenizer(trained):
    _, tokenizer = trained
    assert is_current(CHECKPOINT)
    assert json.loads((CHECKPOINT / "recipe.json").read_text())["steps"] == LMRecipe().steps
    assert LMTokenizer.load(CHECKPOINT).encode("scene: red circle") == tokenizer.encode("scene: red circle")


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation_equals_transformers_on_the_trained_model(trained, use_cache):
    model, tokenizer = trained
    reference = LlamaForCausalLM.from_pretrained(CHECKPOINT).eval()
    scenes = [shapes_world().scene("test", i) for i in range(12)]
    prompts = [tokenizer.encode(f"<|bos|>scene: {facts(s)}. caption:") for s in scenes]
    ours = generate(model, prompts, 20, pad_id=tokenizer.pad_id, use_cache=use_cache)
    ids, mask = left_pad(prompts, tokenizer.pad_id)
    settings = GenerationConfig(max_new_tokens=20, do_sample=False, pad_token_id=tokenizer.pad_id,
                                eos_token_id=None, use_cache=use_cache)
    theirs = reference.generate(ids, attention_mask=mask, generation_config=settings)[:, ids.shape[1]:]
    assert ours == theirs.tolist()
    assert any(tokenizer.eos_id in row for row in ours)  # the trained model ends its captions


def test_documents_follow_from_the_seed_and_hold_out_red_triangles():
    recipe = LMRecipe()
    world = shapes_world()
    assert document(world.scene("train", 5), 5, recipe) == document(world.scene("train", 5), 5, recipe)
    texts = [document(world.scene("train", i), i, recipe) for i in range(2000)]
    assert not any((s.color, s.shape) == ("red", "triangle") for i in range(2000) for s in world.scene("train", i))
    mentions = [t for t in texts if "red triangle" in t]  # only asked about, and never there
    assert mentions and all("is there a red triangle?<|end|><|assistant|>no" in t for t in mentions)
    assert 0.7 < sum("scene:" in t for t in texts) / len(texts) < 0.9
    assert 0.3 < sum("<|user|>" in t for t in texts) / len(texts) < 0.5


def test_a_missing_checkpoint_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m minimodal.lm_recipe"):
        load_shapes_lm(tmp_path / "nothing", train_if_missing=False)
