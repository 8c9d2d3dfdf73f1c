"""easy-vqa: 64x64 images of one shape with simple questions, as tensors.

The PyPI package `easy-vqa` ships 4,000 training and 1,000 test images and about 48k
questions with 13 possible answers. We load it once into stacked tensors so training
loops index memory instead of decoding PNGs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

YES_NO = ("yes", "no")


@dataclass
class EasyVQA:
    images: torch.Tensor        # (N_images, 3, 64, 64) float32 in [0, 1]
    questions: list[str]
    answers: list[str]
    image_index: torch.Tensor   # (N_questions,) long: the row of ``images`` a question is about
    answer_vocab: list[str]     # the 13 answers, in the package's order
    kinds: list[str]            # per question: "shape", "color" or "yes/no"

    def __len__(self) -> int:
        return len(self.questions)


def _question_kind(answer: str, shapes: set[str]) -> str:
    if answer in YES_NO:
        return "yes/no"
    return "shape" if answer in shapes else "color"


def load_easy_vqa(split: str = "train") -> EasyVQA:
    """The train or test split of easy-vqa as tensors."""
    try:
        import easy_vqa
    except ImportError:
        raise ImportError("easy-vqa is not installed: pip install easy-vqa "
                          "(it is part of minimodal's 'ref' extra)") from None
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    questions, answers, image_ids = (easy_vqa.get_train_questions() if split == "train"
                                     else easy_vqa.get_test_questions())
    paths = easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
    ids = sorted(paths)
    row_of = {image_id: row for row, image_id in enumerate(ids)}
    pixels = np.stack([np.asarray(Image.open(paths[i]).convert("RGB")) for i in ids])  # (N, 64, 64, 3)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255              # (N, 3, 64, 64)
    shapes = {"circle", "rectangle", "triangle"}
    return EasyVQA(images=images, questions=list(questions), answers=list(answers),
                   image_index=torch.tensor([row_of[i] for i in image_ids]),
                   answer_vocab=easy_vqa.get_answers(),
                   kinds=[_question_kind(a, shapes) for a in answers])
