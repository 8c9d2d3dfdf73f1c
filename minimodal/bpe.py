"""Byte-level byte-pair encoding (BPE): learn merges from text, then encode and decode.

Any text is a sequence of UTF-8 bytes, so the ids 0..255 already spell everything and no
input is ever unknown. Training finds the adjacent pair of ids that occurs most often and
gives it a new id (256, 257, ...): that is one merge. Encoding replays the merges on new
text, the one learned first before the others, so frequent words become a single id while
rare ones fall back to pieces, down to single bytes. Decoding glues the bytes back together.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import regex

Pair = tuple[int, int]

# Text is cut into chunks before training so that no merge spans two words. This is GPT-2's
# pattern: contractions, runs of letters, digits or punctuation (each with the space before
# it), and the whitespace between them. Every character lands in exactly one chunk, so
# encoding the chunks one by one loses nothing.
CHUNK_PATTERN = regex.compile(
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def pair_counts(ids: Sequence[int], counts: Counter | None = None, weight: int = 1) -> Counter:
    """How often each adjacent pair occurs in ``ids``, added to ``counts`` when given.

    ``weight`` counts the sequence that many times: training sees each distinct word once,
    weighted by how often it occurs in the corpus.
    """
    counts = Counter() if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] += weight
    return counts


def merge_pair(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace each occurrence of ``pair`` in ``ids`` by ``new_id``, scanning left to right.

    Overlaps go to the leftmost match: merging (7, 7) in [7, 7, 7] gives [new_id, 7].
    """
    merged, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def apply_merges(ids: Sequence[int], merges: dict[Pair, int]) -> list[int]:
    """Encode with a merge table (pair -> new id): always merge the pair that was learned first.

    New ids are handed out in the order merges are learned, so "learned first" is "smallest
    new id". Replaying in that order reproduces what training did to the same word.
    """
    ids = list(ids)
    while len(ids) >= 2:
        pairs = list(zip(ids, ids[1:]))
        made = [merges.get(pair, math.inf) for pair in pairs]  # the id each pair would merge into
        first = min(made)
        if first == math.inf:
            break
        ids = merge_pair(ids, pairs[made.index(first)], first)
    return ids


class BPE:
    """A byte-level BPE tokenizer: a merge table and, derived from it, the bytes each id spells."""

    def __init__(self, merges: dict[Pair, int]):
        self.merges = dict(merges)
        self.vocab = {i: bytes([i]) for i in range(256)}  # id -> the bytes it stands for
        for (left, right), new_id in self.merges.items():
            if new_id != len(self.vocab):
                raise ValueError(f"merge {(left, right)} makes id {new_id}, but merges must make the "
                                 f"ids 256, 257, ... in order; the next one is {len(self.vocab)}")
            if left not in self.vocab or right not in self.vocab:
                raise ValueError(f"merge {(left, right)} uses an id that no earlier merge made")
            self.vocab[new_id] = self.vocab[left] + self.vocab[right]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BPE:
        """Learn ``vocab_size - 256`` merges from ``text``.

        Stops early, with a smaller vocabulary, when every word is already a single id.
        """
        if vocab_size < 256:
            raise ValueError(f"vocab_size must be at least 256 (one id per byte), got {vocab_size}")
        chunk_counts = Counter(CHUNK_PATTERN.findall(require_text(text)))
        words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
        weights = list(chunk_counts.values())
        merges = {}
        for new_id in range(256, vocab_size):
            counts = Counter()
            for word, weight in zip(words, weights):
                pair_counts(word, counts, weight)
            if not counts:
                break
            best = max(counts, key=counts.get)  # ties go to the pair seen first
            merges[best] = new_id
            words = [merge_pair(word, best, new_id) for word in words]
        return cls(merges)

    def encode(self, text: str) -> list[int]:
        ids = []
        for chunk in CHUNK_PATTERN.findall(require_text(text)):
            ids.extend(apply_merges(chunk.encode("utf-8"), self.merges))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text these ids spell; byte sequences that are not valid UTF-8 become '�'."""
        pieces = []
        for i in ids:
            if i not in self.vocab:
                raise ValueError(f"id {i} is not in the vocabulary (ids 0..{self.vocab_size - 1})")
            pieces.append(self.vocab[i])
        return b"".join(pieces).decode("utf-8", errors="replace")

    def save(self, path: str | Path) -> None:
        """Write the merges, in order, as JSON; the new ids are implied by the order."""
        Path(path).write_text(json.dumps({"merges": [list(pair) for pair in self.merges]}))

    @classmethod
    def load(cls, path: str | Path) -> BPE:
        pairs = json.loads(Path(path).read_text())["merges"]
        return cls({(left, right): 256 + i for i, (left, right) in enumerate(pairs)})


def require_text(text) -> str:
    """The text itself, or a TypeError saying a str was expected and what came instead."""
    if not isinstance(text, str):
        raise TypeError(f"expected text as a str, got {type(text).__name__}")
    return text
