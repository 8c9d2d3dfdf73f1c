"""Show, Attend and Tell (Xu et al., 2015): an LSTM captioner that looks before each word.

At every step the decoder's input is the previous word and an attention-weighted average
of the image's patches, the weights chosen from the LSTM's state: where to look depends
on what has been said. It speaks the step interface of ``minimodal.decoding``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from minimodal.decoding import State
from minimodal.lstm import LSTMCell


@dataclass(kw_only=True)
class LSTMDecoderConfig:
    vocab_size: int
    memory_width: int           # width of the encoder's patch features
    embed_dim: int = 64         # word embeddings
    hidden_size: int = 128      # LSTM state
    attention_dim: int = 64     # the space where the state and the patches are compared


class AdditiveAttention(nn.Module):
    """Bahdanau's attention: score_i = v . tanh(W_m m_i + W_h h), softmax over the patches.

    A small MLP judges how well each patch fits the current state. The patches'
    projection does not depend on the step, so ``start`` computes it once per image.
    """

    def __init__(self, memory_width: int, hidden_size: int, attention_dim: int):
        super().__init__()
        self.memory_proj = nn.Linear(memory_width, attention_dim)
        self.state_proj = nn.Linear(hidden_size, attention_dim)
        self.score = nn.Linear(attention_dim, 1)

    def forward(self, memory: torch.Tensor, projected: torch.Tensor,
                h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """memory (B, N, Dm), projected = memory_proj(memory) (B, N, A), h (B, H).

        Returns the context, the weighted average of the patches (B, Dm), and the weights (B, N).
        """
        scores = self.score(torch.tanh(projected + self.state_proj(h)[:, None])).squeeze(-1)  # (B, N)
        weights = scores.softmax(dim=-1)
        context = (weights[:, :, None] * memory).sum(dim=1)                                 # (B, Dm)
        return context, weights


class LSTMDecoder(nn.Module):
    """Show, Attend and Tell: at each step, look (attention), then speak (an LSTM step).

    The LSTM's state starts from the mean patch feature: before the first word the
    decoder has seen the image as a whole. Each step reads the previous word and where
    it is now looking, and the next word is predicted from the new state and that context.
    """

    def __init__(self, config: LSTMDecoderConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.init_h = nn.Linear(config.memory_width, config.hidden_size)
        self.init_c = nn.Linear(config.memory_width, config.hidden_size)
        self.attention = AdditiveAttention(config.memory_width, config.hidden_size, config.attention_dim)
        self.cell = LSTMCell(config.embed_dim + config.memory_width, config.hidden_size)
        self.head = nn.Linear(config.hidden_size + config.memory_width, config.vocab_size)

    def start(self, memory: torch.Tensor) -> State:
        mean = memory.mean(dim=1)  # (B, Dm)
        return {"memory": memory, "projected": self.attention.memory_proj(memory),
                "h": torch.tanh(self.init_h(mean)), "c": torch.tanh(self.init_c(mean))}

    def step_with_attention(self, tokens: torch.Tensor, state: State
                            ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """tokens (B,) -> next-word logits (B, V), the new state, attention weights (B, N)."""
        context, weights = self.attention(state["memory"], state["projected"], state["h"])
        x = torch.cat([self.embed(tokens), context], dim=-1)              # (B, E + Dm)
        h, c = self.cell(x, (state["h"], state["c"]))                    # each (B, H)
        logits = self.head(torch.cat([h, context], dim=-1))              # (B, V)
        return logits, {**state, "h": h, "c": c}, weights

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        logits, state, _ = self.step_with_attention(tokens, state)
        return logits, state

    def run(self, tokens: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: tokens (B, T) -> logits (B, T, V) and attention (B, T, N)."""
        state = self.start(memory)
        logits, weights = [], []
        for t in range(tokens.shape[1]):
            step_logits, state, step_weights = self.step_with_attention(tokens[:, t], state)
            logits.append(step_logits)
            weights.append(step_weights)
        return torch.stack(logits, dim=1), torch.stack(weights, dim=1)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.run(tokens, memory)[0]

    def cross_attention(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Where the decoder looked while reading each token: (B, T, N)."""
        return self.run(tokens, memory)[1]
