"""Turning next-word probabilities into a caption: greedy decoding and beam search.

A decoder only ever answers "given the words so far, how likely is each next word?".
Writing a whole caption is a search over sequences, and the best sequence is not
always made of the best single words:

* **greedy** takes the most likely word at every step. Fast, one sequence, but an early
  choice that looked good can lead to a poor sentence it can never revise.
* **beam search** keeps the ``beam_width`` most likely *prefixes* at every step, extends
  each by every word, and keeps the best ``beam_width`` of those. A prefix that ends
  with <eos> is set aside as finished and the beam narrows by one; the search stops
  when every beam has finished or the length limit is reached.

Scores are sums of log-probabilities, so every extra word lowers them: left alone,
beam search prefers short captions. **Length normalization** ranks the finished
captions by score / length ** alpha instead (alpha = 0: raw sum, alpha = 1: mean
log-probability per word).

Both work with any decoder that has ``start(memory) -> state`` and
``step(tokens, state) -> (logits, state)``, a state being a dict of tensors (or KV caches)
whose first dimension is the batch: ``state[name][rows]`` picks sequences.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

State = dict[str, Any]  # tensors or KV caches, batch first: state[name][rows] picks sequences


class Stepper(Protocol):
    def start(self, memory: torch.Tensor) -> State: ...
    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]: ...


def select(state: State, rows: torch.Tensor) -> State:
    """The state of the sequences ``rows`` (in that order, repeats allowed): beams reordered."""
    return {name: tensor[rows] for name, tensor in state.items()}


def _check_lengths(max_length: int, beam_width: int = 1) -> None:
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1 token, got {max_length}")
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")


@torch.no_grad()
def greedy_decode(decoder: Stepper, memory: torch.Tensor, *, bos: int, eos: int,
                  max_length: int) -> list[list[int]]:
    """The most likely next word, step after step, for every image of the batch at once.

    memory (B, N, D). Returns B lists of token ids, without <bos> or <eos>; a caption
    that has not ended after ``max_length`` tokens is cut there.
    """
    _check_lengths(max_length)
    batch = memory.shape[0]
    state = decoder.start(memory)
    tokens = torch.full((batch,), bos, dtype=torch.long, device=memory.device)
    done = torch.zeros(batch, dtype=torch.bool, device=memory.device)
    generated = []
    for _ in range(max_length):
        logits, state = decoder.step(tokens, state)
        tokens = logits.argmax(dim=-1)                        # (B,)
        generated.append(torch.where(done, eos, tokens))
        done |= tokens == eos
        if done.all():
            break
    rows = torch.stack(generated, dim=1).tolist()            # (B, T)
    return [row[:row.index(eos)] if eos in row else row for row in rows]


@torch.no_grad()
def beam_search(decoder: Stepper, memory: torch.Tensor, *, bos: int, eos: int, beam_width: int,
                max_length: int, alpha: float = 1.0) -> list[int]:
    """The best caption for one image, memory (1, N, D), without <bos> or <eos>.

    Finished captions are ranked by (sum of log-probabilities) / length ** alpha, the
    length counting the <eos> token. With beam_width 1 this is greedy decoding.
    """
    _check_lengths(max_length, beam_width)
    if memory.shape[0] != 1:
        raise ValueError(f"beam_search decodes one image at a time; memory should be (1, N, D), "
                         f"got {tuple(memory.shape)}")
    state = decoder.start(memory)
    prefixes: list[list[int]] = [[]]                          # the live beams, without <bos>
    scores = memory.new_zeros(1)                              # (beams,) sum of log-probabilities
    tokens = torch.tensor([bos], device=memory.device)
    finished: list[tuple[float, list[int]]] = []              # (normalized score, tokens)
    for _ in range(max_length):
        logits, state = decoder.step(tokens, state)
        candidates = scores[:, None] + logits.float().log_softmax(dim=-1)  # (beams, V)
        width = min(beam_width - len(finished), candidates.numel())
        best, flat = candidates.flatten().topk(width)
        beam, word = flat // candidates.shape[1], flat % candidates.shape[1]
        keep = []
        for score, b, w in zip(best.tolist(), beam.tolist(), word.tolist()):
            if w == eos:
                finished.append((score / (len(prefixes[b]) + 1) ** alpha, prefixes[b]))
            else:
                keep.append((b, w))
        if not keep:
            break
        rows = torch.tensor([b for b, _ in keep], device=memory.device)
        prefixes = [prefixes[b] + [w] for b, w in keep]
        scores = candidates[rows, torch.tensor([w for _, w in keep], device=memory.device)]
        tokens = torch.tensor([w for _, w in keep], device=memory.device)
        state = select(state, rows)
    else:  # out of length: the live beams are finished as they are
        finished += [(s / len(p) ** alpha, p) for s, p in zip(scores.tolist(), prefixes)]
    return max(finished, key=lambda item: item[0])[1]


class RandomDecoder:
    """A stand-in for a trained decoder: a tiny recurrent language model with random weights.

    Its next-word distribution depends on every word before it, like a real decoder's,
    yet it is small enough that all captions up to a few words can be listed and scored
    one by one: the ground truth that a search over sequences is checked against.
    ``sharpness`` scales the logits: large values make it confident, small ones hesitant.
    The memory (B, N, width) sets the starting state, as an image would.
    """

    def __init__(self, vocab_size: int, width: int = 8, sharpness: float = 2.0, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.width = width
        self.embedding = torch.randn(vocab_size, width, generator=generator)              # (V, W)
        self.recurrence = torch.randn(width, width, generator=generator) / width ** 0.5  # (W, W)
        self.output = sharpness * torch.randn(width, vocab_size, generator=generator)     # (W, V)

    def start(self, memory: torch.Tensor) -> State:
        return {"h": torch.tanh(memory.float().mean(dim=1))}                             # (B, W)

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h = torch.tanh(self.embedding[tokens] + state["h"] @ self.recurrence)           # (B, W)
        return h @ self.output, {"h": h}                                                 # (B, V)
