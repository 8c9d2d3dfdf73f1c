"""A long short-term memory network (LSTM), one time step at a time.

An LSTM reads a sequence left to right and carries two vectors: the cell state ``c``, a
memory that is only ever scaled and added to, and the hidden state ``h``, what the cell
shows to the outside. At every step four gates, all computed from the current input and
the previous ``h``, decide what happens to the memory:

    i = sigmoid(input gate)     how much of the candidate to write
    f = sigmoid(forget gate)    how much of the old memory to keep
    g = tanh(candidate)         what to write
    o = sigmoid(output gate)    how much of the memory to show

    c' = f * c + i * g
    h' = o * tanh(c')

Because ``c`` is updated by a product and a sum rather than by a squashing matrix
multiply, gradients can flow through many steps without vanishing, which is what the
plain RNN lacked. Parameters are named and laid out exactly as ``torch.nn.LSTM``'s
(gates stacked in the order i, f, g, o), so weights copy across with a key rename and
the two can be compared number for number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass(kw_only=True)
class LSTMConfig:
    input_size: int
    hidden_size: int
    num_layers: int = 1


def lstm_cell(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
              weight_ih: torch.Tensor, weight_hh: torch.Tensor,
              bias_ih: torch.Tensor, bias_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step: the new (h, c) from the input x and the previous (h, c).

    x (B, I), h and c (B, H); weight_ih (4H, I), weight_hh (4H, H), biases (4H,), with the
    four gates stacked in torch's order: input, forget, candidate, output.
    """
    gates = x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=1)                              # each (B, H)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


def init_forget_bias(cell: "LSTMCell", value: float = 1.0) -> None:
    """Start the forget gate at sigmoid(value) instead of about one half.

    With the default initialisation a fresh cell forgets half its memory at every step, so
    early in training a word read five steps ago reaches the end scaled by 1/32. A forget
    bias of 1 keeps about 73% per step. The gate's pre-activation adds two biases, so the
    value goes in one of them (bias_ih, forget rows H:2H) and the other's forget rows are
    zeroed: the sum is exactly ``value``.
    """
    H = cell.hidden_size
    with torch.no_grad():
        cell.bias_ih[H:2 * H] = value
        cell.bias_hh[H:2 * H] = 0.0


class LSTMCell(nn.Module):
    """The parameters of one layer, initialised as torch does: U(-1/sqrt(H), 1/sqrt(H))."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size))
        bound = 1 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        return lstm_cell(x, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


class LSTM(nn.Module):
    """A stack of LSTM layers over batch-first, right-padded sequences.

    A padded batch holds sequences of different lengths: row b is real for its first
    ``lengths[b]`` steps and padding after. Past its end a sequence's state is frozen
    (the padding never reaches it) and its outputs are zero, so the final state is the
    state after the last real step, just as torch.nn.LSTM gives on a packed sequence.
    """

    def __init__(self, config: LSTMConfig):
        super().__init__()
        if config.num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {config.num_layers}")
        self.config = config
        sizes = [config.input_size] + [config.hidden_size] * (config.num_layers - 1)
        self.layers = nn.ModuleList(LSTMCell(size, config.hidden_size) for size in sizes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
                state: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, T, I); lengths (B,) or None for all T; state (h0, c0), each (L, B, H), or zeros.

        Returns the last layer's outputs (B, T, H) and the final (h, c), each (L, B, H).
        """
        B, T, _ = self._check_input(x)
        lengths = self._check_lengths(lengths, B, T, x.device)
        L, H = self.config.num_layers, self.config.hidden_size
        if state is None:
            zeros = x.new_zeros(L, B, H)
            state = (zeros, zeros)
        real = torch.arange(T, device=x.device)[None, :] < lengths[:, None]  # (B, T)
        real = real[:, :, None]                                               # (B, T, 1)

        final_h, final_c = [], []
        for layer, h, c in zip(self.layers, state[0], state[1]):
            outputs = []
            for t in range(T):
                h_new, c_new = layer(x[:, t], (h, c))                     # each (B, H)
                h = torch.where(real[:, t], h_new, h)
                c = torch.where(real[:, t], c_new, c)
                outputs.append(torch.where(real[:, t], h_new, torch.zeros_like(h_new)))
            x = torch.stack(outputs, dim=1)                               # (B, T, H)
            final_h.append(h)
            final_c.append(c)
        return x, (torch.stack(final_h), torch.stack(final_c))

    def _check_input(self, x: torch.Tensor) -> tuple[int, int, int]:
        if x.dim() != 3 or x.shape[2] != self.config.input_size:
            raise ValueError(f"LSTM expects input of shape (batch, time, {self.config.input_size}),"
                             f" got {tuple(x.shape)}")
        if x.shape[1] == 0:
            raise ValueError("LSTM got sequences of length 0; every sequence needs at least one step")
        return tuple(x.shape)

    @staticmethod
    def _check_lengths(lengths: torch.Tensor | None, B: int, T: int,
                       device: torch.device) -> torch.Tensor:
        if lengths is None:
            return torch.full((B,), T, device=device)
        lengths = torch.as_tensor(lengths, device=device)
        if lengths.shape != (B,):
            raise ValueError(f"lengths must have shape ({B},), one per sequence, got {tuple(lengths.shape)}")
        if (lengths < 1).any() or (lengths > T).any():
            raise ValueError(f"every length must be between 1 and the padded length {T}, "
                             f"got {lengths.tolist()}")
        return lengths

    def load_from_torch(self, reference: nn.LSTM) -> None:
        """Copy a torch.nn.LSTM's weights (strict: a missing, extra or misshapen tensor raises)."""
        unsupported = {"batch_first": True, "bidirectional": False, "proj_size": 0, "bias": True}
        for option, needed in unsupported.items():
            if getattr(reference, option) != needed:
                raise ValueError(f"can only copy a torch.nn.LSTM with {option}={needed}, "
                                 f"this one has {option}={getattr(reference, option)}")
        renamed = {}
        for key, tensor in reference.state_dict().items():
            name, layer = key.rsplit("_l", 1)  # 'weight_ih_l0' -> ('weight_ih', '0')
            renamed[f"layers.{layer}.{name}"] = tensor
        self.load_state_dict(renamed, strict=True)
