"""ViLT: words and patches in one Transformer, fused in every layer (Kim et al., 2021).

CLIP squeezes an image into one pooled vector and a sentence into another, then compares
the two: nothing about *where* a shape is, or *how many* there are, survives unless it
fits in that one vector. ViLT fuses inside the network instead. The question's word
embeddings and the image's patch embeddings are put in one sequence

    [CLS, word_1, ..., word_T, IMAGE_CLS, patch_1, ..., patch_N]

and read by one stack of the same pre-LN blocks CLIP's towers use. In every layer every
word attends to every patch (and every patch to every word), so "is the circle left of
the square?" can look at both shapes' patches and their positions. A learned
*modality-type* embedding, one vector for text and one for image, is added to each side
so the blocks can tell the two apart; each side keeps its own position embeddings.

After the last block, a pooler (dense + tanh) reads the first token, and a small head
turns it into one logit per answer of a fixed vocabulary. VQA has several human answers
per question, so training is not softmax cross-entropy on one label but binary
cross-entropy against a soft score per answer (``vqa_soft_scores``, ``vqa_bce_loss``).

Names follow the checkpoint loosely; ``minimodal.convert_vilt`` maps them onto
transformers' ``ViltForQuestionAnswering``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from minimodal.transformer import Transformer, padding_mask
from minimodal.vit import VisionConfig, check_pixels

TEXT, IMAGE = 0, 1  # the two rows of the modality-type embedding
INIT_STD = 0.02     # the learned embeddings start as BERT's and ViLT's do, N(0, 0.02^2)


@dataclass(kw_only=True)
class ViltConfig(VisionConfig):
    """A ViLT: a ViT-shaped stack (pre-LN, GELU) with BERT's text embeddings in front.

    The defaults are ViLT-B/32 for VQAv2: 384-pixel images, 40 text positions,
    3,129 answers, LayerNorm eps 1e-12 as in its checkpoint.
    """

    vocab_size: int = 30522
    max_length: int = 40          # text positions
    type_vocab_size: int = 2      # BERT's segment embedding; every word is in segment 0
    answers: int = 3129           # the answer vocabulary the VQA head scores
    image_size: int = 384
    embed_dim: int | None = None  # no projection: the pooler reads the fused sequence
    activation: str = "gelu"
    norm_eps: float = 1e-12


@dataclass
class ViltOutput:
    sequence: torch.Tensor  # (B, T + 1 + N, D) every token after the final LayerNorm
    pooled: torch.Tensor    # (B, D) tanh(dense(first token))
    logits: torch.Tensor    # (B, answers) one logit per answer; sigmoid -> its score


class ViLT(nn.Module):
    """Question ids (B, T) with their 0/1 attention mask, pixels (B, 3, S, S) -> answer logits.

    Every patch is used, in reading order. The original ViLT (and transformers) draws the
    image tokens through ``torch.multinomial`` on every forward: at training time, with
    ``max_image_length`` set, a random subset of patches is kept, an augmentation that also
    shuffles them. Position embeddings travel with their patch, and attention does not
    care about order, so nothing but the order of image tokens in the output changes;
    we keep every patch in order, which makes the model deterministic and its attention
    maps readable on the grid.
    """

    def __init__(self, config: ViltConfig):
        super().__init__()
        self.config = config
        width, patches = config.width, config.grid_size ** 2
        # Text side: BERT's embeddings, word + position + segment, then a LayerNorm. Words
        # start as small as positions (BERT's init); at torch's default N(0, 1) they would
        # drown the positions, and the question would start as a bag of words.
        self.token_embedding = nn.Embedding(config.vocab_size, width)
        nn.init.normal_(self.token_embedding.weight, std=INIT_STD)
        self.position_embedding = nn.Parameter(INIT_STD * torch.randn(config.max_length, width))
        self.segment_embedding = nn.Parameter(INIT_STD * torch.randn(config.type_vocab_size, width))
        self.ln_embed = nn.LayerNorm(width, eps=config.norm_eps)
        # Image side: ViT's patches (this convolution has a bias), a class token, positions.
        self.patch_embed = nn.Conv2d(3, width, config.patch_size, stride=config.patch_size)
        self.class_embedding = nn.Parameter(INIT_STD * torch.randn(width))
        self.image_position_embedding = nn.Parameter(INIT_STD * torch.randn(patches + 1, width))
        self.modality_embedding = nn.Parameter(INIT_STD * torch.randn(2, width))
        self.transformer = Transformer(config)
        self.ln_final = nn.LayerNorm(width, eps=config.norm_eps)
        self.pooler = nn.Linear(width, width)
        self.classifier = nn.Sequential(nn.Linear(width, 2 * width), nn.LayerNorm(2 * width),
                                        nn.GELU(), nn.Linear(2 * width, config.answers))

    def check_text(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        """Refuse ids the embeddings cannot read, saying what they accept."""
        c = self.config
        if ids.dim() != 2 or ids.dtype != torch.long:
            raise ValueError(f"ids must be (batch, length) integer token ids, got {tuple(ids.shape)} {ids.dtype}")
        if ids.shape[1] > c.max_length:
            raise ValueError(f"question of {ids.shape[1]} tokens is longer than the model's "
                             f"{c.max_length} text positions; truncate it first")
        if ids.numel() and not (0 <= int(ids.min()) and int(ids.max()) < c.vocab_size):
            raise ValueError(f"token ids must lie in [0, {c.vocab_size}), got [{int(ids.min())}, {int(ids.max())}]")
        if attention_mask.shape != ids.shape:
            raise ValueError(f"attention_mask must have the shape of ids {tuple(ids.shape)}, "
                             f"got {tuple(attention_mask.shape)}")

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, T, D): BERT's embeddings, then the text modality type."""
        x = self.token_embedding(ids) + self.position_embedding[:ids.shape[1]] + self.segment_embedding[0]
        return self.ln_embed(x) + self.modality_embedding[TEXT]                       # (B, T, D)

    def embed_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, 1 + N, D): class token and every patch, positions and image type added.

        transformers resizes the position grid to each image's unpadded size; our images
        are always the configured size, where that resizing is the identity.
        """
        check_pixels(pixels, self.config.image_size)
        patches = self.patch_embed(pixels).flatten(2).transpose(1, 2)                 # (B, N, D)
        cls = self.class_embedding.expand(len(patches), 1, -1)                        # (B, 1, D)
        tokens = torch.cat([cls, patches], dim=1) + self.image_position_embedding     # (B, 1 + N, D)
        return tokens + self.modality_embedding[IMAGE]

    def embed(self, ids: torch.Tensor, attention_mask: torch.Tensor,
              pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused input (B, T + 1 + N, D) and its (B, 1, 1, T + 1 + N) key mask: padding
        words are hidden from every query; image tokens are always seen."""
        self.check_text(ids, attention_mask)
        if len(pixels) != len(ids):
            raise ValueError(f"{len(ids)} questions but {len(pixels)} images; give one image per question")
        text, image = self.embed_text(ids), self.embed_image(pixels)                  # (B, T, D), (B, 1 + N, D)
        keys = torch.cat([attention_mask, attention_mask.new_ones(image.shape[:2])], dim=1)  # (B, T + 1 + N)
        return torch.cat([text, image], dim=1), padding_mask(keys)

    def hidden_states(self, ids: torch.Tensor, attention_mask: torch.Tensor,
                      pixels: torch.Tensor) -> list[torch.Tensor]:
        """The fused input and every block's output, (B, T + 1 + N, D) each: for attention pictures."""
        x, mask = self.embed(ids, attention_mask, pixels)
        return self.transformer.hidden_states(x, mask)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor, pixels: torch.Tensor) -> ViltOutput:
        sequence = self.ln_final(self.hidden_states(ids, attention_mask, pixels)[-1])  # (B, T + 1 + N, D)
        pooled = torch.tanh(self.pooler(sequence[:, 0]))                               # (B, D)
        return ViltOutput(sequence=sequence, pooled=pooled, logits=self.classifier(pooled))


def vqa_soft_scores(answers_per_question: Sequence[Sequence[str]], vocabulary: Sequence[str]) -> torch.Tensor:
    """Human answers -> (Q, len(vocabulary)) soft targets, min(1, count / 3) per answer.

    VQA asks ten people each question and counts an answer fully right when at least
    three of them gave it: min(1, #humans who said it / 3). The same rule makes the
    training target, so "2" said by three people scores 1.0 and "3" said by one 1/3.
    Answers outside the vocabulary cannot be predicted and are left out.
    """
    index = {answer: i for i, answer in enumerate(vocabulary)}
    if len(index) != len(vocabulary):
        raise ValueError("the answer vocabulary holds a duplicate; each answer must appear once")
    if isinstance(answers_per_question, str) or any(isinstance(a, str) for a in answers_per_question):
        raise ValueError("answers_per_question must be one list of answer strings per question, "
                         "e.g. [['2', '2', '3'], ['red']]")
    scores = torch.zeros(len(answers_per_question), len(vocabulary))
    for row, answers in zip(scores, answers_per_question):
        for answer in answers:
            if answer in index:
                row[index[answer]] += 1
    return (scores / 3).clamp(max=1.0)


def vqa_bce_loss(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of each answer's logit against its soft score.

    Each answer is its own yes/no question ("is '2' a right answer?"), so several can
    be partly right at once, which a softmax over answers cannot express. The mean over
    all B x A terms is multiplied by A, the number of answers, as ViLT (after BAN) does:
    that is the sum over answers averaged over questions, which keeps the gradient from
    shrinking as the answer vocabulary grows.
    """
    if logits.shape != soft_targets.shape or logits.dim() != 2:
        raise ValueError(f"logits and soft_targets must both be (questions, answers), got "
                         f"{tuple(logits.shape)} and {tuple(soft_targets.shape)}")
    return F.binary_cross_entropy_with_logits(logits, soft_targets.to(logits.dtype)) * soft_targets.shape[1]
