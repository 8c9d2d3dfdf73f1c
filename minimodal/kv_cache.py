"""The KV cache: every layer's keys and values for the tokens seen so far.

A decoder predicts one token at a time, and each new token's query must attend to the
keys and values of all the tokens before it. Those do not change once computed (a
causal model never lets an old token see a new one), so they are kept and the new
token's keys and values are appended: a step then costs one position's work instead of
the whole prefix's. Attention takes a layer's cache as an argument (``cache=``); there is
no second implementation of attention for generation.
"""

from __future__ import annotations

import torch


class LayerCache:
    """One layer's keys and values so far, each (B, H_kv, T, Dh), or None before the first step."""

    def __init__(self, keys: torch.Tensor | None = None, values: torch.Tensor | None = None):
        self.keys, self.values = keys, values

    def extend(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new positions' keys and values (B, H_kv, T_new, Dh); return all of them."""
        if self.keys is not None:
            keys, values = torch.cat([self.keys, keys], dim=2), torch.cat([self.values, values], dim=2)
        self.keys, self.values = keys, values
        return keys, values


class KVCache:
    """A LayerCache per block; ``len`` is the number of positions cached."""

    def __init__(self, layers: int):
        self.layers = [LayerCache() for _ in range(layers)]

    def __len__(self) -> int:
        first = self.layers[0].keys
        return 0 if first is None else first.shape[2]

    def __getitem__(self, rows: torch.Tensor) -> KVCache:
        """The cache of the sequences ``rows`` (B',): beams reordered, finished rows dropped."""
        picked = KVCache(0)
        picked.layers = [LayerCache(c.keys[rows], c.values[rows]) if c.keys is not None else LayerCache()
                         for c in self.layers]
        return picked
