"""A VQA split as tensors: questions that point into a shared table of images.

Several questions are asked about each image, and the image encoder is the expensive
part of a VQA model, so a split keeps each image once and each question as word ids plus
the row of its image. Built from easy-vqa or from a shapes-world batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from minimodal.vocab import WordVocab


@dataclass
class VQAData:
    """A VQA split as stacked tensors: questions point into a shared table of images.

    ``images`` may also hold features (N_images, D) computed once by a frozen encoder.
    """

    images: torch.Tensor          # (N_images, 3, H, W), or (N_images, D) features
    image_index: torch.Tensor     # (Q,) row of ``images`` each question is about
    question_ids: torch.Tensor    # (Q, T) word ids, right-padded
    lengths: torch.Tensor         # (Q,) words per question
    answers: torch.Tensor         # (Q,) index into answer_vocab
    kinds: list[str]              # (Q,) question type, for accuracy per type
    answer_vocab: list[str]

    def __len__(self) -> int:
        return len(self.answers)

    @classmethod
    def encode(cls, images: torch.Tensor, image_index, questions: list[str], answers: list[str],
               kinds: list[str], vocab: WordVocab, answer_vocab: list[str]) -> "VQAData":
        if not len(questions) == len(answers) == len(kinds) == len(image_index):
            raise ValueError(f"need one answer, kind and image index per question, got "
                             f"{len(questions)} questions, {len(answers)} answers, {len(kinds)} "
                             f"kinds and {len(image_index)} image indices")
        answer_ids = {answer: i for i, answer in enumerate(answer_vocab)}
        unknown = sorted(set(answers) - set(answer_ids))
        if unknown:
            raise ValueError(f"answers {unknown} are not in the answer vocabulary {answer_vocab}")
        question_ids, lengths = vocab.encode_batch(questions)
        return cls(images=images, image_index=torch.as_tensor(image_index), question_ids=question_ids,
                   lengths=lengths, answers=torch.tensor([answer_ids[a] for a in answers]),
                   kinds=list(kinds), answer_vocab=list(answer_vocab))

    def to(self, device: torch.device | str) -> "VQAData":
        return replace(self, images=self.images.to(device), image_index=self.image_index.to(device),
                       question_ids=self.question_ids.to(device), lengths=self.lengths.to(device),
                       answers=self.answers.to(device))

    def questions_about(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The questions about these (distinct) image rows, and each one's image's position in them."""
        position = torch.full((len(self.images),), -1, dtype=torch.long, device=images.device)
        position[images] = torch.arange(len(images), device=images.device)
        local = position[self.image_index]                      # (Q,), -1 where not asked
        questions = torch.nonzero(local >= 0).squeeze(1)
        return questions, local[questions]


def shapes_vqa(batch, vocab: WordVocab, answer_vocab: list[str]) -> VQAData:
    """A shapes-world batch (questions grouped per image) as VQAData."""
    rows = [(image, qa) for image, qas in enumerate(batch.questions) for qa in qas]
    return VQAData.encode(batch.images, [image for image, _ in rows], [qa.question for _, qa in rows],
                          [qa.answer for _, qa in rows], [qa.kind for _, qa in rows], vocab,
                          answer_vocab)
