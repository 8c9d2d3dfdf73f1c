"""CLIP's tokenizer, id for id: text cleaning, a regex pre-split, then byte-level BPE.

CLIP tokenizes like GPT-2 with three twists. Text is cleaned and lowercased first. The last
piece of every word carries a word-end mark, ``</w>``, so "cat" closing a word is a
different token from the "cat" that opens "category". And every text becomes exactly 77
ids: a start token, the text's pieces, an end token, then zeros.

The vocabulary has 49,408 entries, in this order: the 256 bytes, the same 256 bytes marked
as word ends, one token per merge (48,894 of them, ranked by when they were learned), and
the two special tokens. So the merge of rank r makes id 512 + r, and the merge loop of
``minimodal.bpe`` runs unchanged on these ids.
"""

from __future__ import annotations

import functools
import gzip
import html
import importlib.util
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import regex
import torch

from minimodal.bpe import apply_merges, require_text

try:
    import ftfy
except ImportError:  # cleaning then skips the repair of broken unicode; ids differ only on such text
    ftfy = None

CONTEXT_LENGTH = 77
WORD_END = "</w>"
START_OF_TEXT, END_OF_TEXT = "<|startoftext|>", "<|endoftext|>"
OPENAI_MERGES = 48_894  # 49,408 ids = 512 byte tokens + 48,894 merges + 2 special tokens
MERGES_HEADER = "#version: 0.2"

# ftfy leaves printable ASCII alone unless it holds an HTML escape ("&"): its fixes target
# non-ASCII characters and control codes. Such text, most captions, skips the costly call.
_FTFY_CANNOT_CHANGE = regex.compile(r"[\t\n\x20-\x25\x27-\x7e]*")

# A word is a contraction suffix, a run of letters, a single digit, or a run of anything
# else that is not whitespace. Whitespace only separates words and disappears.
SPLIT_PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE)


def clean_text(text: str) -> str:
    """CLIP's cleaning: repair broken unicode (ftfy), undo HTML escaping twice, fold runs of
    whitespace into one space, strip, lowercase."""
    text = require_text(text)
    if ftfy is not None and not _FTFY_CANNOT_CHANGE.fullmatch(text):
        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return " ".join(text.split()).lower()


def pre_split(text: str) -> list[str]:
    """Cut cleaned text into the words BPE works on; merges never cross from one to the next."""
    return SPLIT_PATTERN.findall(text)


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """A visible character for each byte, the alphabet CLIP's vocabulary files are written in.

    Bytes that print as themselves keep their character; the 68 others (space, control
    codes, ...) borrow the characters from U+0100 on. The order is that of CLIP's first 256 ids.
    """
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
               *range(ord("®"), ord("ÿ") + 1)]
    hidden = [b for b in range(256) if b not in visible]
    return {**{b: chr(b) for b in visible}, **{b: chr(256 + i) for i, b in enumerate(hidden)}}


class CLIPTokenizer:
    """Text to CLIP's ids: ``tokenizer(["a photo of a cat"])`` is a (1, 77) LongTensor."""

    def __init__(self, merges: Sequence[tuple[str, str]], context_length: int = CONTEXT_LENGTH):
        if context_length < 2:
            raise ValueError(f"context_length must leave room for the start and end tokens "
                             f"(at least 2), got {context_length}")
        self.context_length = context_length
        byte_chars = bytes_to_unicode()
        self.byte_ids = {b: i for i, b in enumerate(byte_chars)}  # word-end twin: id + 256
        self.ids = {}  # token -> id
        for token in [*byte_chars.values(), *(c + WORD_END for c in byte_chars.values())]:
            self._add_token(token)
        self.merges = {}  # (id, id) -> id of the merged token
        for rank, (left, right) in enumerate(merges):
            if left not in self.ids or right not in self.ids:
                raise ValueError(f"merge {rank} ({left} {right}) uses a token that is neither "
                                 f"a byte nor the result of an earlier merge")
            self.merges[self.ids[left], self.ids[right]] = len(self.ids)
            self._add_token(left + right)
        self.start_id, self.end_id = self._add_token(START_OF_TEXT), self._add_token(END_OF_TEXT)
        self.tokens = list(self.ids)  # id -> token
        self.token_bytes = [_bytes_of(token) for token in self.tokens]  # id -> what it spells
        # Captions reuse a small set of words, so each word's ids are computed once.
        self._encode_word = functools.lru_cache(maxsize=2**17)(self._bpe_word)

    def _add_token(self, token: str) -> int:
        if token in self.ids:
            raise ValueError(f"the token {token!r} is made twice; each merge must make a new token")
        self.ids[token] = len(self.ids)
        return self.ids[token]

    def _bpe_word(self, word: str) -> tuple[int, ...]:
        ids = [self.byte_ids[b] for b in word.encode("utf-8")]
        ids[-1] += 256  # the last byte carries the word end
        return tuple(apply_merges(ids, self.merges))

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """The ids of a text, without start and end tokens and of any length."""
        ids = []
        for word in pre_split(clean_text(text)):
            ids.extend(self._encode_word(word))
        return ids

    def decode(self, ids) -> str:
        """The text the ids spell: the cleaned text, with a space after every word."""
        pieces = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"id {i} is not in the vocabulary (ids 0..{self.vocab_size - 1})")
            pieces.append(self.token_bytes[i])
        return b"".join(pieces).decode("utf-8", errors="replace")

    def __call__(self, texts: str | Sequence[str], truncate: bool = False,
                 context_length: int | None = None) -> torch.Tensor:
        """(B, context_length) ids: start token, the text's ids, end token, zeros.

        A text that does not fit is an error, unless ``truncate=True``: then it is cut and
        the end token is still the last id. ``context_length`` defaults to the tokenizer's.
        """
        context_length = context_length or self.context_length
        if context_length < 2:
            raise ValueError(f"context_length must leave room for the start and end tokens "
                             f"(at least 2), got {context_length}")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)):
            raise TypeError(f"expected a str or a list of str, got {type(texts).__name__}")
        rows = []
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] is a {type(text).__name__}; every text must be a str")
            ids = [self.start_id, *self.encode(text), self.end_id]
            if len(ids) > context_length:
                if not truncate:
                    raise ValueError(
                        f"texts[{index}] is {len(ids)} tokens long with its start and end tokens, "
                        f"but the context holds {context_length}; pass truncate=True to cut it")
                ids = ids[:context_length - 1] + [self.end_id]
            rows.append(ids + [0] * (context_length - len(ids)))
        # numpy turns a list of lists into an array several times faster than torch.tensor
        return torch.from_numpy(np.array(rows, dtype=np.int64).reshape(len(rows), context_length))

    @classmethod
    def from_openai(cls, path: str | Path | None = None) -> CLIPTokenizer:
        """Read OpenAI's ``bpe_simple_vocab_16e6.txt.gz``: a header line, then one merge per line.

        Without a path, the copy inside the installed ``open_clip_torch`` package is used
        (found without importing it). CLIP uses the first 48,894 merges of the file.
        """
        path = Path(path) if path is not None else open_clip_file("bpe_simple_vocab_16e6.txt.gz")
        lines = gzip.open(path, "rt", encoding="utf-8").read().split("\n")
        merges = _parse_merges([line for line in lines[1:1 + OPENAI_MERGES] if line], path)
        if len(merges) < OPENAI_MERGES:
            raise ValueError(f"{path} holds {len(merges)} merges; CLIP's vocabulary needs {OPENAI_MERGES}")
        return cls(merges)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> CLIPTokenizer:
        """Read a checkpoint folder's ``vocab.json`` and ``merges.txt`` (transformers' format).

        The merges define the vocabulary; vocab.json must agree with it id for id, or this
        raises and names the first token that differs.
        """
        folder = Path(folder)
        lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")
        merges = [line for line in lines if line and not line.startswith("#version")]
        tokenizer = cls(_parse_merges(merges, folder / "merges.txt"))
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        for token, i in tokenizer.ids.items():
            if vocab.get(token) != i:
                raise ValueError(f"{folder / 'vocab.json'} gives {token!r} the id {vocab.get(token)}, "
                                 f"but merges.txt makes it {i}")
        unexpected = sorted(set(vocab) - set(tokenizer.ids))
        if unexpected:
            raise ValueError(f"{folder / 'vocab.json'} has {len(unexpected)} tokens that merges.txt "
                             f"does not make, first {unexpected[0]!r}")
        return tokenizer

    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``vocab.json`` and ``merges.txt`` as transformers' CLIPTokenizer reads them."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.json").write_text(json.dumps(self.ids, ensure_ascii=False), encoding="utf-8")
        merge_lines = [f"{self.tokens[left]} {self.tokens[right]}" for left, right in self.merges]
        (folder / "merges.txt").write_text("\n".join([MERGES_HEADER, *merge_lines]) + "\n",
                                           encoding="utf-8")


def _bytes_of(token: str) -> bytes:
    """What a token spells: its bytes, then a space if it ends a word."""
    if token in (START_OF_TEXT, END_OF_TEXT):
        return token.encode("utf-8")
    word_end = token.endswith(WORD_END)
    body = token[:-len(WORD_END)] if word_end else token
    return bytes(_byte_of_char()[c] for c in body) + (b" " if word_end else b"")


@functools.cache
def _byte_of_char() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def _parse_merges(lines: Sequence[str], source: Path) -> list[tuple[str, str]]:
    merges = []
    for number, line in enumerate(lines):
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{source}: merge line {number + 1} should be two tokens separated "
                             f"by a space, got {line!r}")
        merges.append((parts[0], parts[1]))
    return merges


def open_clip_file(name: str) -> Path:
    """A file of the installed open_clip_torch package, found without importing it
    (``import open_clip`` needs torchvision, which the course does not install)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{name} comes with the open_clip_torch package, which is not "
                                f"installed: pip install --no-deps open_clip_torch (CLIPTokenizer."
                                f"from_openai also takes the path of bpe_simple_vocab_16e6.txt.gz)")
    return Path(spec.submodule_search_locations[0]) / name
