"""Image captioning: a ViT looks at the image, a decoder writes about it one word at a time.

The encoder turns the image into a grid of patch features, the *memory*. The decoder is a
language model whose every prediction may also look at that memory: it is trained with
*teacher forcing* (fed the true caption shifted right, it predicts each next word in one
pass) and used *autoregressively* (fed its own previous word, one step at a time; see
``minimodal.decoding`` for greedy and beam search).

Two decoders, the two eras of captioning:

* ``LSTMDecoder``, after Show, Attend and Tell (Xu et al., 2015): an LSTM whose input at
  every step is the previous word and an attention-weighted average of the patches, the
  weights chosen from the LSTM's state: where to look depends on what has been said.
* ``TransformerDecoder``: blocks of causal self-attention over the words so far,
  cross-attention from the words to the patches, and an MLP. Training sees every position
  at once; generation keeps each layer's keys and values in a *KV cache* so that a new
  word costs one position's work, not the whole prefix again.

Both decoders speak the same step interface, which is all decoding needs:
``start(memory) -> state`` and ``step(tokens, state) -> (logits, state)``, where a state
is a dict of tensors whose first dimension is the batch (so beam search can reorder it).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from minimodal.decoding import State
from minimodal.lstm import LSTMCell
from minimodal.transformer import MLP, MultiHeadAttention, attention, causal_mask
from minimodal.vit import VisionConfig, VisionTransformer
from minimodal.vqa import PAD, UNK, WordVocab

BOS, EOS = "<bos>", "<eos>"


# --- words ----------------------------------------------------------------------------

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


# --- the encoder ----------------------------------------------------------------------

class PatchEncoder(nn.Module):
    """A ViT whose output is every patch's feature, not one pooled vector: (B, N, width).

    The decoder attends to the grid, so it can look at one shape while naming it. The
    class token is left out so each memory row is one place in the image.
    """

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        self.vit = VisionTransformer(config)
        self.vit.proj.requires_grad_(False)  # the pooled embedding is not used here

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = self.vit.hidden_states(pixels)[-1]  # (B, 1 + N, D)
        return self.vit.ln_post(tokens[:, 1:])        # (B, N, D)


# --- the LSTM decoder with attention ----------------------------------------------------

@dataclass
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


# --- the Transformer decoder ------------------------------------------------------------

@dataclass
class TransformerDecoderConfig:
    vocab_size: int
    width: int = 64             # must equal the encoder's width: cross-attention reads its patches
    layers: int = 2
    heads: int = 4
    mlp_width: int | None = None  # None: 4 * width
    max_length: int = 32        # positions, <bos> and <eos> included
    norm_eps: float = 1e-5
    fused: bool = True

    def __post_init__(self):
        self.mlp_width = self.mlp_width or 4 * self.width

    @property
    def memory_width(self) -> int:
        """Cross-attention reads the patches at the decoder's own width."""
        return self.width


def keys_values(attn: MultiHeadAttention, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The keys and values a layer makes of ``context`` (B, N, D): each (B, H, N, D / H)."""
    return attn.split_heads(attn.k_proj(context)), attn.split_heads(attn.v_proj(context))


def attend(attn: MultiHeadAttention, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """MultiHeadAttention with keys and values given (from a cache): x (B, Nq, D) -> (B, Nq, D)."""
    q = attn.split_heads(attn.q_proj(x))        # (B, H, Nq, Dh)
    out = attention(q, k, v, None, attn.fused)  # (B, H, Nq, Dh)
    batch, _, length, _ = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(batch, length, -1))


class DecoderBlock(nn.Module):
    """Pre-LN: causal self-attention over the words, cross-attention to the patches, MLP.

    The same arithmetic as torch.nn.TransformerDecoderLayer(norm_first=True, gelu, no
    dropout); ``load_from_torch`` copies its weights so the two can be compared.
    """

    def __init__(self, config: TransformerDecoderConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.self_attn = MultiHeadAttention(config.width, config.heads, config.fused)
        self.ln_2 = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.cross_attn = MultiHeadAttention(config.width, config.heads, config.fused)
        self.ln_3 = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.mlp = MLP(config.width, config.mlp_width, "gelu")

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The whole sequence at once: x (B, T, D), memory (B, N, D), mask (T, T) causal."""
        x = x + self.self_attn(self.ln_1(x), mask=mask)
        x = x + self.cross_attn(self.ln_2(x), context=memory)
        return x + self.mlp(self.ln_3(x))

    def step(self, x: torch.Tensor, cache: State, layer: int) -> torch.Tensor:
        """New positions only, x (B, 1, D), with this layer's keys and values in ``cache``.

        The new word's keys and values are appended to those of the words before it;
        its query then attends to all of them. No mask is needed: everything cached
        lies in its past. The memory's keys and values were computed once by ``start``.
        """
        h = self.ln_1(x)
        k, v = keys_values(self.self_attn, h)
        cache[f"self_k.{layer}"] = k = torch.cat([cache[f"self_k.{layer}"], k], dim=2)  # (B, H, t+1, Dh)
        cache[f"self_v.{layer}"] = v = torch.cat([cache[f"self_v.{layer}"], v], dim=2)
        x = x + attend(self.self_attn, h, k, v)
        x = x + attend(self.cross_attn, self.ln_2(x), cache[f"memory_k.{layer}"], cache[f"memory_v.{layer}"])
        return x + self.mlp(self.ln_3(x))


class TransformerDecoder(nn.Module):
    """Word and position embeddings, decoder blocks, a final LayerNorm, and the word logits."""

    def __init__(self, config: TransformerDecoderConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.position_embedding = nn.Parameter(0.02 * torch.randn(config.max_length, config.width))
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.layers))
        self.ln_final = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.head = nn.Linear(config.width, config.vocab_size, bias=False)

    def embed(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """tokens (B, T) at positions start .. start+T-1 -> (B, T, D)."""
        end = start + tokens.shape[1]
        if end > self.config.max_length:
            raise ValueError(f"position {end - 1} is past the decoder's {self.config.max_length} "
                             "positions; generate fewer tokens or build it with a larger max_length")
        return self.token_embedding(tokens) + self.position_embedding[start:end]

    def decode(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """The block stack and final norm on embedded words x (B, T, D): (B, T, D)."""
        mask = causal_mask(x.shape[1], x.device)
        for block in self.blocks:
            x = block(x, memory, mask)
        return self.ln_final(x)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: tokens (B, T) -> next-word logits (B, T, V), every position at once."""
        return self.head(self.decode(self.embed(tokens), memory))

    def start(self, memory: torch.Tensor) -> State:
        """An empty KV cache, with the memory's keys and values made once for every layer."""
        cache = {}
        for layer, block in enumerate(self.blocks):
            k, v = keys_values(block.cross_attn, memory)          # (B, H, N, Dh)
            cache[f"memory_k.{layer}"], cache[f"memory_v.{layer}"] = k, v
            cache[f"self_k.{layer}"] = k.new_zeros(k.shape[0], k.shape[1], 0, k.shape[3])
            cache[f"self_v.{layer}"] = v.new_zeros(v.shape[0], v.shape[1], 0, v.shape[3])
        return cache

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """tokens (B,), the words just chosen -> logits for the next (B, V) and the grown cache."""
        cache = dict(state)
        x = self.embed(tokens[:, None], start=cache["self_k.0"].shape[2])  # (B, 1, D)
        for layer, block in enumerate(self.blocks):
            x = block.step(x, cache, layer)
        return self.head(self.ln_final(x))[:, 0], cache

    def cross_attention(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """The last layer's cross-attention, averaged over heads: (B, T, N), for heat maps."""
        x, mask = self.embed(tokens), causal_mask(tokens.shape[1], tokens.device)
        for block in self.blocks[:-1]:
            x = block(x, memory, mask)
        last = self.blocks[-1]
        x = x + last.self_attn(last.ln_1(x), mask=mask)
        return last.cross_attn.attention_map(last.ln_2(x), memory).mean(dim=1)

    def load_from_torch(self, reference: nn.TransformerDecoder) -> None:
        """Copy a torch.nn.TransformerDecoder's layers and final norm (strict: a missing,
        extra or misshapen tensor raises). The embeddings and head are ours alone."""
        layer = reference.layers[0]
        if not layer.norm_first or reference.norm is None or layer.activation is not F.gelu:
            raise ValueError("can only copy a torch.nn.TransformerDecoder built with norm_first=True, "
                             "activation='gelu' and a final norm: the arrangement this decoder uses")
        renamed = {}
        for key, tensor in reference.state_dict().items():
            renamed.update(_torch_decoder_key(key, tensor))
        own = {k: v for k, v in self.state_dict().items()
               if k.startswith(("token_embedding", "position_embedding", "head"))}
        self.load_state_dict({**own, **renamed}, strict=True)


_TORCH_NAMES = {"self_attn.out_proj": "self_attn.out_proj", "multihead_attn.out_proj": "cross_attn.out_proj",
                "linear1": "mlp.fc1", "linear2": "mlp.fc2",
                "norm1": "ln_1", "norm2": "ln_2", "norm3": "ln_3"}


def _torch_decoder_key(key: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """One torch.nn.TransformerDecoder entry as our names: its packed q/k/v projection
    (in_proj_weight, 3D x D) becomes three."""
    if key.startswith("norm."):
        return {key.replace("norm.", "ln_final.", 1): tensor}
    _, index, rest = key.split(".", 2)  # 'layers.0.linear1.weight'
    module, param = rest.rsplit(".", 1)
    prefix = f"blocks.{index}."
    if param.startswith("in_proj_"):
        attn = {"self_attn": "self_attn", "multihead_attn": "cross_attn"}[module]
        kind = param.removeprefix("in_proj_")
        q, k, v = tensor.chunk(3, dim=0)
        return {f"{prefix}{attn}.{name}_proj.{kind}": part for name, part in zip("qkv", (q, k, v))}
    if module not in _TORCH_NAMES:
        raise KeyError(f"unexpected tensor {key!r} in the torch.nn.TransformerDecoder")
    return {f"{prefix}{_TORCH_NAMES[module]}.{param}": tensor}


# --- the captioner ----------------------------------------------------------------------

class Captioner(nn.Module):
    """A patch encoder and a decoder: pixels and the caption so far -> the next word."""

    def __init__(self, vision: VisionConfig, decoder: LSTMDecoder | TransformerDecoder):
        super().__init__()
        memory_width = decoder.config.memory_width
        if memory_width != vision.width:
            raise ValueError(f"the decoder reads memory of width {memory_width} but the encoder's "
                             f"patch features have width {vision.width}; make them equal")
        self.encoder = PatchEncoder(vision)
        self.decoder = decoder

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """pixels (B, 3, S, S), tokens (B, T) -> next-word logits (B, T, V)."""
        return self.decoder(tokens, self.encoder(pixels))


def caption_loss(model: Captioner, batch: tuple[torch.Tensor, torch.Tensor], pad: int = 0) -> torch.Tensor:
    """Teacher forcing: read <bos> w1 .. wn, predict w1 .. wn <eos>; padding does not count."""
    pixels, ids = batch                              # (B, 3, S, S), (B, T)
    logits = model(pixels, ids[:, :-1])              # (B, T-1, V)
    return F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten(), ignore_index=pad)


def batch_sampler(pixels: torch.Tensor, ids: torch.Tensor, batch_size: int,
                  seed: int = 0) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """batch_at(step): a random batch drawn from (seed, step) alone, as ``train`` needs for
    exact resumes. Each batch is trimmed to its longest caption."""
    lengths = (ids != 0).sum(dim=1)

    def batch_at(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        rows = torch.randint(len(ids), (batch_size,), generator=generator).to(ids.device)
        return pixels[rows], ids[rows, :int(lengths[rows].max())]
    return batch_at
