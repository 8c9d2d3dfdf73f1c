"""Judging the course's LLaVA: answers per kind of question, hallucinations, captions, and a look inside.

Every question is asked alone, about one image, in the chat template, and answered
greedily until ``<|end|>``. An answer counts when it is exactly the shapes world's
answer. Two ways of being confidently wrong are counted apart: saying "yes" to a shape
that is not there, and naming the colour of a shape kind the image does not hold (the
training chats never ask such a question, so the model has never learned to say "none").
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F

from minimodal.data.shapes import COLORS, SHAPES, _a
from minimodal.data.shapes_text import is_true, parse_caption
from minimodal.generate import generate
from minimodal.llava import LLaVA, expand_image_tokens
from minimodal.llava_recipe import CAPTION_PROMPT, CONTEXT
from minimodal.lm_tokenizer import BOS, LMTokenizer, chat_text


def question_prompt(tokenizer: LMTokenizer, question: str, image_tokens: int) -> list[int]:
    """'scene:<image>.<|user|>question<|end|><|assistant|>': where the answer is to be written."""
    text = BOS + chat_text([(question, "")], CONTEXT)
    return expand_image_tokens(tokenizer.encode(text), tokenizer.image_id, image_tokens)


@torch.no_grad()
def complete(model: LLaVA, tokenizer: LMTokenizer, features: torch.Tensor, prompts: list[list[int]],
             stop: int, max_new_tokens: int, batch_size: int = 256) -> list[str]:
    """Greedy continuations of prompts, one image each (features (Q, P, Dv)), until ``stop``."""
    device = next(model.parameters()).device
    texts = []
    for start in range(0, len(prompts), batch_size):
        written = generate(model, prompts[start:start + batch_size], max_new_tokens, stop_tokens=[stop],
                           pad_id=tokenizer.pad_id,
                           prompt_inputs={"features": features[start:start + batch_size].to(device)})
        texts += [tokenizer.decode(ids).strip() for ids in written]
    return texts


def answer(model: LLaVA, tokenizer: LMTokenizer, features: torch.Tensor, questions: list[str]) -> list[str]:
    """The model's answer to each question about its image."""
    prompts = [question_prompt(tokenizer, q, model.config.image_tokens) for q in questions]
    return complete(model, tokenizer, features, prompts, tokenizer.end_id, max_new_tokens=8)


def describe(model: LLaVA, tokenizer: LMTokenizer, features: torch.Tensor) -> list[str]:
    """A caption per image, written after 'scene:<image>. caption:' as in stage 1."""
    prompt = expand_image_tokens(tokenizer.encode(CAPTION_PROMPT), tokenizer.image_id, model.config.image_tokens)
    return complete(model, tokenizer, features, [prompt] * len(features), tokenizer.eos_id, max_new_tokens=24)


def accuracy_by_kind(model: LLaVA, tokenizer: LMTokenizer, features: torch.Tensor, questions: list[list]
                     ) -> dict[str, float]:
    """Exact-answer accuracy per kind of question, and over all; questions[i] are image i's QAs."""
    rows = [(image, qa) for image, qas in enumerate(questions) for qa in qas]
    said = answer(model, tokenizer, features[[image for image, _ in rows]], [qa.question for _, qa in rows])
    right: dict[str, list[bool]] = defaultdict(list)
    for (_, qa), text in zip(rows, said):
        right[qa.kind].append(text == qa.answer)
        right["all"].append(text == qa.answer)
    return {kind: sum(r) / len(r) for kind, r in sorted(right.items())}


def hallucination(model: LLaVA, tokenizer: LMTokenizer, features: torch.Tensor, scenes: list) -> dict[str, float]:
    """How often the model is confidently wrong about what is not in the image.

    'absent pair, said yes': asked "is there a purple triangle?" for every colour-shape
    pair the scene lacks, the fraction answered "yes". 'absent kind, named a colour': asked
    "what color is the circle?" when there is no circle, the fraction answered with a colour.
    """
    pairs, kinds = [], []
    for image, scene in enumerate(scenes):
        present = {(s.color, s.shape) for s in scene}
        pairs += [(image, f"is there {_a(c)} {k}?") for c in COLORS for k in SHAPES if (c, k) not in present]
        kinds += [(image, f"what color is the {k}?") for k in SHAPES if k not in {s.shape for s in scene}]
    rates = {}
    for name, asked, wrong in (("absent pair, said yes", pairs, {"yes"}), ("absent kind, named a colour", kinds,
                                                                         set(COLORS))):
        said = answer(model, tokenizer, features[[i for i, _ in asked]], [q for _, q in asked])
        rates[name] = sum(text in wrong for text in said) / len(said)
    return rates


def caption_truth(captions: list[str], scenes: list) -> dict[str, float]:
    """The fractions of captions that are sentences of the shapes world, and that are true of their scene."""
    parsed = [parse_caption(c) for c in captions]
    return {"valid": sum(p is not None for p in parsed) / len(parsed),
            "true": sum(p is not None and is_true(p, s) for p, s in zip(parsed, scenes)) / len(parsed)}


@torch.no_grad()
def nearest_words(model: LLaVA, tokenizer: LMTokenizer, features: torch.Tensor, vocabulary: list[str]
                  ) -> list[str]:
    """For each image token of one image (features (P, Dv)), the word of ``vocabulary`` whose
    input embedding is closest in cosine: what the projector's output looks like to the LM."""
    ids = [tokenizer.encode(" " + word) for word in vocabulary]
    if any(len(i) != 1 for i in ids):
        raise ValueError("every word must be a single token of the language model's vocabulary")
    table = model.language_model.token_embedding.weight[[i[0] for i in ids]]         # (W, D)
    tokens = model.image_tokens(features[None])[0]                                   # (P, D)
    similarity = F.normalize(tokens, dim=-1) @ F.normalize(table, dim=-1).T          # (P, W)
    return [vocabulary[i] for i in similarity.argmax(dim=-1).tolist()]
