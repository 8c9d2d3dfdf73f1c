"""BLIP's training signal: ITC on the whole batch, ITM on pairs made hard on purpose.

ITM is a yes/no question. Asked about random wrong captions it is too easy: "a dog on
a beach" for a picture of squares is rejected from one word, and the head learns
nothing about who is where. So for every image BLIP draws one wrong caption from the
batch with probability softmax(its ITC similarities), the positives left out: the
captions the cheap scorer already confuses with the right one (a swapped colour, a
swapped relation) are drawn most. Likewise one wrong image for every caption. ITM is
then cross-entropy over the true pairs (label "match") and both kinds of wrong pairs
("no match"). Salesforce's pretraining code does this (with a momentum encoder and a
queue beside it, left out here); transformers has none of it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from minimodal.loss import clip_loss

NO_MATCH, MATCH = 0, 1   # the ITM head's two classes, in transformers' order
NO_NEGATIVE = -1         # drawn for a row whose every entry is a positive


def _draw_rows(scores: torch.Tensor, positives: torch.Tensor,
               generator: torch.Generator | None) -> torch.Tensor:
    """(R, C) scores and positives -> (R,) one column per row from softmax over its non-positives."""
    weights = scores.detach().float().masked_fill(positives, float("-inf")).softmax(dim=-1)  # (R, C)
    drawn = torch.full((len(scores),), NO_NEGATIVE, dtype=torch.long, device=scores.device)
    has_negative = ~positives.all(dim=1)                                                     # (R,)
    if has_negative.any():
        drawn[has_negative] = torch.multinomial(weights[has_negative], 1, generator=generator)[:, 0]
    return drawn


def hard_negatives(similarity: torch.Tensor, positives: torch.Tensor,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One wrong caption per image and one wrong image per caption, drawn where ITC is confused.

    similarity (B_img, B_text): ITC scores, already divided by the temperature (the softmax
    is taken as given). positives (B_img, B_text) bool: True where the caption describes
    the image; those are never drawn. Returns (caption index per image (B_img,), image index
    per caption (B_text,)). Rule for a row with no wrong candidate at all (every entry a
    positive): it gets -1 (``NO_NEGATIVE``) and the caller leaves it out, rather than being
    given a "negative" that is in fact a match. ``generator`` must live on similarity's device.
    """
    if similarity.dim() != 2 or positives.shape != similarity.shape:
        raise ValueError(f"expected similarity and positives of one shape (images, captions), got "
                         f"{tuple(similarity.shape)} and {tuple(positives.shape)}")
    if positives.dtype != torch.bool:
        raise ValueError(f"positives must be a boolean mask (True: a matching pair), got {positives.dtype}")
    if not torch.isfinite(similarity).all():
        raise ValueError("similarity holds NaN or infinite values; mark pairs to skip in positives instead")
    return _draw_rows(similarity, positives, generator), _draw_rows(similarity.T, positives.T, generator)


def itm_loss(match_logits: torch.Tensor, no_match_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the ITM head over true pairs (P, 2) and wrong pairs (N, 2), averaged over all P + N."""
    if match_logits.dim() != 2 or match_logits.shape[1] != 2 or no_match_logits.shape[1:] != (2,):
        raise ValueError(f"expected ITM logits (pairs, 2), got {tuple(match_logits.shape)} and "
                         f"{tuple(no_match_logits.shape)}")
    logits = torch.cat([match_logits, no_match_logits])                                      # (P + N, 2)
    labels = torch.cat([torch.full((len(match_logits),), MATCH), torch.full((len(no_match_logits),), NO_MATCH)])
    return F.cross_entropy(logits, labels.to(logits.device))


def itc_itm_loss(model: nn.Module, pixels: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor,
                 temperature: float | torch.Tensor = 0.07,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """BLIP's joint loss on a batch of B matching (image, caption) pairs: {"itc", "itm", "loss"}.

    ``model`` is a ``minimodal.blip.Blip`` (not imported: this module stands beside the models).

    ITC: symmetric InfoNCE (``minimodal.loss.clip_loss``) with pair i the answer to row i.
    ITM: the B true pairs, each image with its hard-negative caption, each caption with
    its hard-negative image, in one pass of the text encoder. Pair i's only positive is
    caption i; "loss" is itc + itm, as BLIP weighs them.
    """
    if len(pixels) != len(ids) or len(ids) < 2:
        raise ValueError(f"expected B >= 2 matching pairs (the negatives come from the rest of the batch), "
                         f"got {len(pixels)} images and {len(ids)} captions")
    image = model.image_features(pixels)                                            # (B, 1 + N, Dv)
    images, texts = model.itc_embeddings(ids, attention_mask, image)               # (B, E) each
    itc = clip_loss(images, texts, 1 / temperature)
    positives = torch.eye(len(ids), dtype=torch.bool, device=ids.device)           # (B, B)
    with torch.no_grad():   # sampling is not differentiated through
        wrong_text, wrong_image = hard_negatives(images @ texts.T / temperature, positives, generator)
    pairs = torch.arange(len(ids), device=ids.device)                               # (B,)
    text_rows = torch.cat([pairs, wrong_text, pairs])                               # (3B,)
    image_rows = torch.cat([pairs, pairs, wrong_image])                             # (3B,)
    keep = (text_rows >= 0) & (image_rows >= 0)                                     # (3B,)
    logits = model.itm_logits(ids[text_rows[keep]], attention_mask[text_rows[keep]],
                              image[image_rows[keep]])                              # (P + N, 2)
    itm = itm_loss(logits[:len(ids)], logits[len(ids):])
    return {"itc": itc, "itm": itm, "loss": itc + itm}
