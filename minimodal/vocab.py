"""Word-level vocabularies: the tokens of lesson 08's questions and lesson 09's captions.

The shapes world and easy-vqa speak a few dozen words, so a word is a token: no subword
tokenizer is needed (lesson 01 builds one for open text), every id is a whole word, and
a prediction is readable as it stands. Id 0 is padding and id 1 any word not seen in
training; a caption vocabulary adds the start and end markers a decoder needs.
"""

from __future__ import annotations

import re
from collections import Counter

import torch

PAD, UNK = "<pad>", "<unk>"
BOS, EOS = "<bos>", "<eos>"


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


def caption_words(caption: str) -> list[str]:
    """Lower-cased words, with each comma a word of its own: 'a red circle, a blue square'."""
    return re.findall(r"[a-z0-9]+|,", caption.lower())


def join_words(words: list[str]) -> str:
    """The inverse of caption_words for our captions: words joined by spaces, commas attached."""
    return " ".join(words).replace(" ,", ",")


class CaptionVocab(WordVocab):
    """Word ids for captions: <pad> 0, <unk> 1, <bos> 2 starts a caption, <eos> 3 ends it.

    Captions of the shapes world use a few dozen words, so a word is a token: no
    subword tokenizer is needed, and every prediction is a whole word.
    """

    def __init__(self, words: list[str]):
        super().__init__([BOS, EOS] + [w for w in words if w not in (BOS, EOS)])
        self.pad, self.unk, self.bos, self.eos = (self.ids[w] for w in (PAD, UNK, BOS, EOS))

    @classmethod
    def build(cls, captions: list[str]) -> "CaptionVocab":
        """Every word of the training captions, most frequent first (ties alphabetical)."""
        counts = Counter(word for c in captions for word in caption_words(c))
        return cls(sorted(counts, key=lambda word: (-counts[word], word)))

    def encode(self, caption: str) -> list[int]:
        """<bos> word ids <eos>."""
        words = caption_words(caption)
        if not words:
            raise ValueError(f"caption {caption!r} has no words; a caption needs at least one "
                             "word (letters or digits)")
        return [self.bos] + [self.ids.get(w, self.unk) for w in words] + [self.eos]

    def decode(self, ids: list[int]) -> str:
        """Ids back to a caption, up to the first <eos>; <bos> and <pad> are dropped."""
        words = []
        for i in ids:
            if i == self.eos:
                break
            if i not in (self.bos, self.pad):
                words.append(self.words[i])
        return join_words(words)
