"""Training and judging a VQA model: the loop, accuracy per question type, and the baselines.

A VQA accuracy means little alone: the shapes world's questions can often be answered
without looking ("is there a circle?" is mostly yes). So every model is compared with
the majority answer and with the best any question-only model can do (``blind_answers``).
"""

from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F

from minimodal.device import autocast
from minimodal.train import History, TrainConfig, train
from minimodal.vqa import VQAModel
from minimodal.vqa_data import VQAData


def _batch(model: VQAModel, data: VQAData, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and answers for all the questions about these image rows."""
    questions, image_index = data.questions_about(images)
    T = int(data.lengths[questions].max())
    logits = model(data.images[images], data.question_ids[questions, :T],
                   data.lengths[questions], image_index)
    return logits, questions


def train_vqa(model: VQAModel, data: VQAData, config: TrainConfig, *, images_per_batch: int = 32,
              seed: int = 0, device: torch.device | str = "cpu") -> History:
    """Train with the course's loop (minimodal.train); a batch is images with all their questions.

    Each image goes through the encoder once however many questions it has, since the
    encoder is the expensive part. Epochs walk the images in an order drawn from
    (seed, epoch), so batch k is the same on every run.
    """
    if images_per_batch > len(data.images):
        raise ValueError(f"images_per_batch={images_per_batch} is more than the {len(data.images)} images")
    data = data.to(device)
    steps_per_epoch = len(data.images) // images_per_batch

    def batch_at(step: int) -> torch.Tensor:
        epoch, k = divmod(step, steps_per_epoch)
        order = torch.randperm(len(data.images), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        return order[k * images_per_batch:(k + 1) * images_per_batch].to(device)

    def loss_fn(model: VQAModel, images: torch.Tensor) -> torch.Tensor:
        logits, questions = _batch(model, data, images)
        return F.cross_entropy(logits.float(), data.answers[questions])

    return train(model, loss_fn, batch_at, config, device=device)


@torch.no_grad()
def predict(model: VQAModel, data: VQAData, images_per_batch: int = 256) -> torch.Tensor:
    """The predicted answer index for every question (Q,), on the CPU."""
    device = next(model.parameters(), torch.empty(0)).device
    data = data.to(device)
    model.eval()
    predictions = torch.empty(len(data), dtype=torch.long, device=device)
    for start in range(0, len(data.images), images_per_batch):
        images = torch.arange(start, min(start + images_per_batch, len(data.images)), device=device)
        with autocast(device):
            logits, questions = _batch(model, data, images)
        predictions[questions] = logits.argmax(dim=-1)
    return predictions.cpu()


def accuracy_by_kind(predictions: torch.Tensor, data: VQAData) -> dict[str, float]:
    """Fraction of questions answered right: 'all', then one entry per question type."""
    right = (predictions.cpu() == data.answers.cpu()).float()
    result = {"all": right.mean().item()}
    for kind in sorted(set(data.kinds)):
        mask = torch.tensor([k == kind for k in data.kinds])
        result[kind] = right[mask].mean().item()
    return result


def confusion(predictions: torch.Tensor, data: VQAData, kind: str) -> tuple[list[str], torch.Tensor]:
    """For one question type: its answers, and counts[true, predicted] over those answers.

    A prediction outside the type's answers (a colour for a yes/no question) is counted
    in an extra last column, "other".
    """
    mask = torch.tensor([k == kind for k in data.kinds])
    if not mask.any():
        raise ValueError(f"no question of kind {kind!r}; kinds here: {sorted(set(data.kinds))}")
    truth, guess = data.answers.cpu()[mask], predictions.cpu()[mask]
    answers = sorted(set(truth.tolist()))
    column = {answer: i for i, answer in enumerate(answers)}
    counts = torch.zeros(len(answers), len(answers) + 1, dtype=torch.long)
    for t, p in zip(truth.tolist(), guess.tolist()):
        counts[column[t], column.get(p, len(answers))] += 1
    return [data.answer_vocab[a] for a in answers], counts


def majority_answer(train: VQAData) -> int:
    """The training set's most common answer (the lowest index on a tie): the floor to beat."""
    return int(torch.bincount(train.answers).argmax())


def blind_answers(train: VQAData, test: VQAData) -> torch.Tensor:
    """The best any model can do without the image: the most common training answer to each question.

    A test question never asked in training gets the majority answer. Questions are
    compared as the model reads them, word ids, so this is the ceiling of a question-only
    model, reached without training one.
    """
    def key(data: VQAData, q: int) -> tuple[int, ...]:
        return tuple(data.question_ids[q, :data.lengths[q]].tolist())

    counts: dict[tuple[int, ...], Counter] = {}
    for q, answer in enumerate(train.answers.tolist()):
        counts.setdefault(key(train, q), Counter())[answer] += 1
    fallback = majority_answer(train)

    def best(counter: Counter | None) -> int:
        if counter is None:
            return fallback
        return min(counter, key=lambda answer: (-counter[answer], answer))

    return torch.tensor([best(counts.get(key(test, q))) for q in range(len(test))], dtype=torch.long)
