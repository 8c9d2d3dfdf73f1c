"""The language model's tokenizer: lesson 01's byte-level BPE plus special tokens.

Special tokens mark structure that text itself must never be able to spell: where a
document begins and ends, where an image goes (lesson 12 splices image features in at
``<|image|>``), and the turns of a chat. Each is one id above the BPE vocabulary, and
``encode`` finds them in a string before BPE runs, so ``"<|user|>"`` typed in a chat
template is one token while the same characters inside a word could never become it
(BPE pieces are bytes, never special ids).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Iterable

import regex

from minimodal.bpe import BPE, CHUNK_PATTERN, apply_merges, require_text

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
IMAGE, USER, ASSISTANT, END = "<|image|>", "<|user|>", "<|assistant|>", "<|end|>"
SPECIALS = (PAD, BOS, EOS, IMAGE, USER, ASSISTANT, END)
FILE = "tokenizer.json"


class LMTokenizer:
    """Text <-> ids: BPE ids first (0 .. bpe.vocab_size - 1), then one id per special token."""

    def __init__(self, bpe: BPE):
        self.bpe = bpe
        self.specials = {token: bpe.vocab_size + i for i, token in enumerate(SPECIALS)}
        self.special_tokens = {i: token for token, i in self.specials.items()}
        self.split = regex.compile("(" + "|".join(regex.escape(t) for t in SPECIALS) + ")")
        (self.pad_id, self.bos_id, self.eos_id, self.image_id, self.user_id, self.assistant_id,
         self.end_id) = (self.specials[t] for t in SPECIALS)
        # A corpus repeats a few hundred words: each chunk's ids are worked out once.
        self._encode_chunk = functools.lru_cache(maxsize=2**16)(self._bpe_chunk)

    def _bpe_chunk(self, chunk: str) -> tuple[int, ...]:
        return tuple(apply_merges(chunk.encode("utf-8"), self.bpe.merges))

    @classmethod
    def train(cls, text: str, vocab_size: int) -> LMTokenizer:
        """Learn BPE merges on the text with its special tokens taken out, then add the specials.

        The pieces between special tokens are joined by newlines, not spaces, so that a word
        right after a special token ("<|user|>what") is learned as it will be met.
        """
        plain = "\n".join(piece for piece in regex.split("|".join(map(regex.escape, SPECIALS)), text) if piece)
        return cls(BPE.train(plain, vocab_size - len(SPECIALS)))

    @property
    def vocab_size(self) -> int:
        return self.bpe.vocab_size + len(self.specials)

    def encode(self, text: str) -> list[int]:
        ids = []
        for piece in self.split.split(require_text(text)):
            if piece in self.specials:
                ids.append(self.specials[piece])
            else:
                for chunk in CHUNK_PATTERN.findall(piece):  # the same chunks BPE.encode makes
                    ids.extend(self._encode_chunk(chunk))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text of the ids, special tokens written out as themselves."""
        pieces, run = [], []
        for i in ids:
            if i in self.special_tokens:
                pieces += [self.bpe.decode(run), self.special_tokens[i]]
                run = []
            else:
                run.append(i)
        return "".join(pieces) + self.bpe.decode(run)

    def save(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / FILE
        merges = [list(pair) for pair in self.bpe.merges]
        path.write_text(json.dumps({"merges": merges, "specials": list(self.specials)}, indent=0))
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> LMTokenizer:
        path = Path(folder) / FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder} has no {FILE}: not a course language-model checkpoint")
        saved = json.loads(path.read_text())
        if tuple(saved["specials"]) != SPECIALS:
            raise ValueError(f"{path} has the special tokens {saved['specials']}; this version of the "
                             f"course expects {list(SPECIALS)}: rebuild the checkpoint")
        merges = {(left, right): 256 + i for i, (left, right) in enumerate(saved["merges"])}
        return cls(BPE(merges))


def chat_text(turns: list[tuple[str, str]], context: str = "") -> str:
    """The chat template: context, then <|user|>question<|end|><|assistant|>answer<|end|> per turn.

    The assistant's side ends with <|end|> too, so the model learns when to stop; an empty
    last answer leaves the text open after <|assistant|>, where generation starts.
    """
    text = context
    for question, answer in turns:
        text += f"{USER}{question}{END}{ASSISTANT}{answer}"
        text += END if answer else ""
    return text
