"""CLIP's text encoder: a causal Transformer whose end-of-text token speaks for the caption.

Token ids are embedded, a learned positional embedding is added, and pre-LN blocks run
with a causal mask, so position i only sees tokens 0..i, as in a language model. The
caption's embedding is then read at the end-of-text token: being last, it is the one
position that has seen the whole caption. Padding after it needs no mask of its own,
since the causal mask already keeps every real token from looking ahead at it; it need
not even be computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from minimodal.transformer import Transformer, TransformerConfig, causal_mask


@dataclass(kw_only=True)
class TextConfig(TransformerConfig):
    """Shape of the text tower; the defaults are CLIP ViT-B/32's."""

    vocab_size: int = 49408
    context_length: int = 77
    width: int = 512
    layers: int = 12
    heads: int = 8
    embed_dim: int = 512          # size of the output embedding, shared with the image tower
    eot_token_id: int = 49407     # <|endoftext|> in CLIP's vocabulary
    activation: str = "quick_gelu"


def eot_positions(ids: torch.Tensor, eot_token_id: int) -> torch.Tensor:
    """(B, N) ids -> (B,) index of the first end-of-text token in each row.

    The first, not the last: a tokenizer may pad with the end-of-text id itself.
    """
    is_eot = ids == eot_token_id
    if not is_eot.any(dim=1).all():
        row = int((~is_eot.any(dim=1)).nonzero()[0])
        raise ValueError(f"row {row} of the token ids has no end-of-text token "
                         f"(id {eot_token_id}); tokenize with it appended")
    return is_eot.int().argmax(dim=1)  # argmax returns the first maximal position


def pool_at_eot(x: torch.Tensor, ids: torch.Tensor, eot_token_id: int) -> torch.Tensor:
    """(B, N, D) features -> (B, D), each row's features at its end-of-text token."""
    rows = torch.arange(len(x), device=x.device)
    return x[rows, eot_positions(ids, eot_token_id)]


class TextTransformer(nn.Module):
    """Token ids (B, N <= context_length) -> text embeddings (B, embed_dim)."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.positional_embedding = nn.Parameter(torch.zeros(config.context_length, config.width))
        self.transformer = Transformer(config)
        self.ln_final = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.proj = nn.Linear(config.width, config.embed_dim, bias=False)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)

    def check_ids(self, ids: torch.Tensor) -> None:
        """Refuse ids that would index past the embeddings, with a message saying why."""
        config = self.config
        if ids.dim() != 2 or ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"expected integer token ids of shape (batch, length), got "
                             f"{ids.dtype} of shape {tuple(ids.shape)}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= config.vocab_size):
            raise ValueError(f"token ids must lie in [0, {config.vocab_size}), got "
                             f"[{int(ids.min())}, {int(ids.max())}]")

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, N) ids -> (B, N, width): token embeddings plus positional embeddings."""
        self.check_ids(ids)
        if ids.shape[1] > self.config.context_length:
            raise ValueError(f"{ids.shape[1]} tokens is more than the context length "
                             f"{self.config.context_length}; truncate (keeping the end-of-text token)")
        return self.token_embedding(ids) + self.positional_embedding[:ids.shape[1]]

    def hidden_states(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """The input to the first block and every block's output, (B, N, width) each."""
        return self.transformer.hidden_states(self.embed(ids), causal_mask(ids.shape[1], ids.device))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, N) ids -> (B, embed_dim). N may exceed the context length when every text ends
        within it (OpenAI's tokenize pads to 77 whatever the model): the padding is never read."""
        self.check_ids(ids)
        if len(ids) == 0:
            return self.proj.weight.new_zeros(0, self.config.embed_dim)
        ends = eot_positions(ids, self.config.eot_token_id)  # (B,)
        # Thanks to the causal mask, nothing after the batch's last end-of-text token can reach
        # the pooled features, so those positions are not computed at all; and the last block
        # computes only the end-of-text row, which sees the positions up to its own.
        ids = ids[:, :int(ends.max()) + 1]
        length = ids.shape[1]
        sees = torch.arange(length, device=ids.device) <= ends[:, None]  # (B, N)
        x = self.transformer.read_out(self.embed(ids), ends[:, None], causal_mask(length, ids.device),
                                      sees[:, None, None, :])          # (B, 1, D)
        return self.proj(self.ln_final(x[:, 0]))                        # (B, embed_dim)
