"""Visual question answering, the classic baseline: a CNN looks, an LSTM reads, a classifier answers.

Before attention-based models, VQA was treated as classification over a fixed set of
answers. An image encoder turns the picture into one vector, a question encoder (word
embeddings read by an LSTM) turns the question into another, the two are fused into a
single vector, and a small MLP scores every answer in the vocabulary.

Fusion is where the two modalities meet. Concatenation keeps them side by side and
leaves the MLP to find how they interact; the element-wise product (after projecting
both to one width) makes every feature of the fused vector an interaction, "is the
question asking about red AND is the image red", which is what answering needs.

The image encoder is pluggable: the small CNN below, trained along with the rest, or
any module mapping images (B, 3, H, W) to features (B, D), such as the course's
pretrained CLIP image tower, kept frozen. A frozen encoder gives the same features at
every epoch, so they are computed once (``frozen_features``) and the model reads them
through ``nn.Identity``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from minimodal.device import autocast
from minimodal.lstm import LSTM, LSTMConfig, init_forget_bias
from minimodal.pretrained import normalize
from minimodal.train import History, TrainConfig, train

PAD, UNK = "<pad>", "<unk>"
FUSIONS = ("product", "concat")


# --- words ----------------------------------------------------------------------------

def question_words(question: str) -> list[str]:
    """Lower-cased words and numbers; punctuation carries nothing here."""
    return re.findall(r"[a-z0-9]+", question.lower())


class WordVocab:
    """Word ids for questions: 0 is padding, 1 stands for any word not seen in training."""

    def __init__(self, words: list[str]):
        self.words = [PAD, UNK] + [w for w in dict.fromkeys(words) if w not in (PAD, UNK)]
        self.ids = {word: i for i, word in enumerate(self.words)}

    @classmethod
    def build(cls, questions: list[str]) -> "WordVocab":
        """Every word of the training questions, most frequent first (ties alphabetical)."""
        counts = Counter(word for q in questions for word in question_words(q))
        return cls(sorted(counts, key=lambda word: (-counts[word], word)))

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, question: str) -> list[int]:
        words = question_words(question)
        if not words:
            raise ValueError(f"question {question!r} has no words; a question needs at least "
                             "one word (letters or digits)")
        return [self.ids.get(word, self.ids[UNK]) for word in words]

    def encode_batch(self, questions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids (N, T) and lengths (N,), T being the longest question."""
        if not questions:
            raise ValueError("encode_batch needs at least one question")
        encoded = [self.encode(q) for q in questions]
        lengths = torch.tensor([len(ids) for ids in encoded])
        ids = torch.zeros(len(encoded), int(lengths.max()), dtype=torch.long)
        for row, question in enumerate(encoded):
            ids[row, :len(question)] = torch.tensor(question)
        return ids, lengths


# --- data -----------------------------------------------------------------------------

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


# --- model ----------------------------------------------------------------------------

@dataclass
class VQAConfig:
    vocab_size: int
    num_answers: int
    word_dim: int = 32
    question_dim: int = 64      # LSTM hidden size
    lstm_layers: int = 1
    image_dim: int = 64         # image features, from the CNN or any encoder of this width
    fused_dim: int = 128
    fusion: str = "product"     # or "concat"

    def __post_init__(self):
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")


class SmallCNN(nn.Module):
    """A strided 5x5 convolution, three convolution + max-pool blocks, a global max, one linear layer.

    The first layer halves the image cheaply (flat colour needs no full resolution);
    max-pooling keeps the strongest edge and corner responses that tell a triangle from a
    circle. The global max asks "is this pattern anywhere?", which makes the features the
    same wherever the shape sits, so they are learned from few images; the price is that
    *where* things are is lost. The closing batch norm keeps the features varying from
    image to image, so training cannot settle on a constant image vector.
    """

    def __init__(self, out_dim: int, width: int = 32):
        super().__init__()
        layers = [nn.Conv2d(3, width // 2, 5, stride=2, padding=2), nn.BatchNorm2d(width // 2), nn.ReLU()]
        channels = width // 2
        for out_channels in (width, width, 2 * width):
            layers += [nn.Conv2d(channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
                       nn.ReLU(), nn.MaxPool2d(2)]
            channels = out_channels
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(channels, out_dim)
        self.norm = nn.BatchNorm1d(out_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.convs(images)                      # (B, C, H/16, W/16)
        return self.norm(self.proj(x.amax(dim=(2, 3))))   # (B, out_dim)


class QuestionEncoder(nn.Module):
    """Word embeddings read by the LSTM; the question is the last layer's final hidden state."""

    def __init__(self, config: VQAConfig):
        super().__init__()
        self.embed = nn.Embedding(config.vocab_size, config.word_dim, padding_idx=0)
        self.lstm = LSTM(LSTMConfig(config.word_dim, config.question_dim, config.lstm_layers))
        for cell in self.lstm.layers:
            init_forget_bias(cell, 1.0)

    def forward(self, question_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(self.embed(question_ids), lengths)  # h (L, Q, question_dim)
        return h[-1]                                              # (Q, question_dim)


def fuse(v: torch.Tensor, q: torch.Tensor, fusion: str) -> torch.Tensor:
    """(Q, D) and (Q, D) -> (Q, D) for "product", (Q, 2D), image first, for "concat"."""
    if fusion == "product":
        return v * q
    if fusion == "concat":
        return torch.cat([v, q], dim=-1)
    raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")


class FusedClassifier(nn.Module):
    """Projects both features to fused_dim with a ReLU, fuses them, scores every answer."""

    def __init__(self, config: VQAConfig):
        super().__init__()
        self.fusion = config.fusion
        self.image_proj = nn.Linear(config.image_dim, config.fused_dim)
        self.question_proj = nn.Linear(config.question_dim, config.fused_dim)
        fused_width = config.fused_dim * (2 if config.fusion == "concat" else 1)
        self.head = nn.Sequential(nn.Linear(fused_width, config.fused_dim), nn.ReLU(),
                                  nn.Linear(config.fused_dim, config.num_answers))

    def forward(self, image_features: torch.Tensor, question_features: torch.Tensor) -> torch.Tensor:
        v = torch.relu(self.image_proj(image_features))         # (Q, fused_dim)
        q = torch.relu(self.question_proj(question_features))   # (Q, fused_dim)
        return self.head(fuse(v, q, self.fusion))               # (Q, num_answers)


class VQAModel(nn.Module):
    """Image encoder + question encoder + fused classifier.

    ``image_encoder`` defaults to a SmallCNN trained with the rest; pass any module that
    maps the images to (B, image_dim), e.g. ``nn.Identity()`` over features computed once.
    """

    def __init__(self, config: VQAConfig, image_encoder: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.image_encoder = image_encoder if image_encoder is not None else SmallCNN(config.image_dim)
        self.question_encoder = QuestionEncoder(config)
        self.classifier = FusedClassifier(config)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        features = self.image_encoder(images)
        if features.dim() != 2 or features.shape[1] != self.config.image_dim:
            raise ValueError(f"the image encoder must give (B, {self.config.image_dim}) features, "
                             f"got {tuple(features.shape)}")
        return features                             # (B, image_dim)

    def forward(self, images: torch.Tensor, question_ids: torch.Tensor, lengths: torch.Tensor,
                image_index: torch.Tensor | None = None) -> torch.Tensor:
        """Answer logits (Q, num_answers). Question q is about images[image_index[q]];
        without image_index, images holds one image per question."""
        image_features = self.encode_images(images)                  # (N_images, image_dim)
        if image_index is not None:
            image_features = image_features[image_index]             # (Q, image_dim)
        question_features = self.question_encoder(question_ids, lengths)  # (Q, question_dim)
        return self.classifier(image_features, question_features)


class CLIPImageEncoder(nn.Module):
    """The image tower of a CLIP, fed [0, 1] images: normalizes them as CLIP expects, then embeds."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip = clip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(normalize(images))   # (B, embed_dim)


@torch.no_grad()
def frozen_features(encoder: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Every image through a frozen encoder once: (N, 3, H, W) -> (N, D), on the images' device."""
    encoder.eval()
    device = next(encoder.parameters()).device
    chunks = []
    for start in range(0, len(images), batch_size):
        with autocast(device):
            chunks.append(encoder(images[start:start + batch_size].to(device)).float())
    return torch.cat(chunks).to(images.device)


# --- training and evaluation ------------------------------------------------------------

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


# --- baselines --------------------------------------------------------------------------

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
