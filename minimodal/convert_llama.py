"""The course's language model in and out of transformers' LlamaForCausalLM, strictly.

The two name the same tensors differently (``transformer.blocks.3.attn.out_proj`` is
``model.layers.3.self_attn.o_proj``) and store them identically, so the map is a rename.
With tied embeddings the output matrix is the input one: transformers leaves
``lm_head.weight`` out of a saved checkpoint then, and so does ``save_lm_checkpoint``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from minimodal.convert import CheckpointMismatch, check_state_dict, read_config, read_weights, write_checkpoint
from minimodal.lm import LanguageModel, LMConfig

LLAMA_NAMES = {"token_embedding.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
               "lm_head.weight": "lm_head.weight"}
LLAMA_BLOCK = {"ln_1.weight": "input_layernorm.weight", "ln_2.weight": "post_attention_layernorm.weight",
               "attn.q_proj.weight": "self_attn.q_proj.weight", "attn.k_proj.weight": "self_attn.k_proj.weight",
               "attn.v_proj.weight": "self_attn.v_proj.weight", "attn.out_proj.weight": "self_attn.o_proj.weight",
               "mlp.gate_proj.weight": "mlp.gate_proj.weight", "mlp.up_proj.weight": "mlp.up_proj.weight",
               "mlp.down_proj.weight": "mlp.down_proj.weight"}
BLOCK = re.compile(r"transformer\.blocks\.(\d+)\.(.+)")
TIED = "lm_head.weight"


def llama_name(key: str) -> str:
    """minimodal's name of a language-model tensor -> LlamaForCausalLM's."""
    if match := BLOCK.fullmatch(key):
        layer, rest = match.groups()
        return f"model.layers.{layer}.{LLAMA_BLOCK[rest]}"
    return LLAMA_NAMES[key]


def to_llama_state_dict(model: LanguageModel) -> dict[str, torch.Tensor]:
    """A state dict that LlamaForCausalLM loads with strict=True (lm_head included even when tied)."""
    return {llama_name(k): v for k, v in model.state_dict().items()}


def load_llama_state_dict(model: LanguageModel, state: dict[str, torch.Tensor]) -> LanguageModel:
    """Copy a LlamaForCausalLM state dict into ``model``, strictly.

    With tied embeddings ``lm_head.weight`` may be absent (as transformers saves it); when
    present it must equal the embedding, or the checkpoint is not a tied model.
    """
    expected = to_llama_state_dict(model)
    if model.config.tie_embeddings:
        head = state.get(TIED)
        if head is not None and not torch.equal(head, state.get("model.embed_tokens.weight", head)):
            raise CheckpointMismatch("the Llama checkpoint's lm_head.weight differs from its embed_tokens, "
                                     "but the model ties them: build it with tie_embeddings=False")
        state = {k: v for k, v in state.items() if k != TIED}
        expected.pop(TIED)
    check_state_dict(state, expected, "the Llama checkpoint")
    own = {k: state[llama_name(k)] for k in model.state_dict() if llama_name(k) in state}
    model.load_state_dict(own, strict=not model.config.tie_embeddings)
    return model


def llama_config(config: LMConfig) -> dict:
    """A transformers LlamaConfig (as a dict) for ``config``."""
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": config.vocab_size,
            "hidden_size": config.width, "intermediate_size": config.mlp_width,
            "num_hidden_layers": config.layers, "num_attention_heads": config.heads,
            "num_key_value_heads": config.kv_heads or config.heads, "head_dim": config.head_width,
            "max_position_embeddings": config.max_length, "rms_norm_eps": config.norm_eps,
            "rope_theta": config.rope_theta, "hidden_act": "silu", "attention_bias": False,
            "mlp_bias": False, "tie_word_embeddings": config.tie_embeddings}


def lm_config_from_llama(llama: dict) -> LMConfig:
    """minimodal's LMConfig from a LlamaForCausalLM config.json (as a dict)."""
    unsupported = {k: llama.get(k) for k, ok in (("hidden_act", "silu"), ("attention_bias", False),
                                                 ("mlp_bias", False)) if llama.get(k, ok) != ok}
    scaling = llama.get("rope_scaling") or (llama.get("rope_parameters") or {}).get("rope_type", "default")
    if unsupported or scaling not in ("default", None):
        raise ValueError(f"only plain Llama models are supported (SiLU, no biases, unscaled RoPE); "
                         f"this config has {unsupported or {'rope': scaling}}")
    theta = llama.get("rope_theta") or (llama.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    width, heads = llama["hidden_size"], llama["num_attention_heads"]
    if llama.get("head_dim", width // heads) != width // heads:
        raise ValueError(f"head_dim {llama['head_dim']} differs from hidden_size / num_attention_heads "
                         f"= {width // heads}; minimodal's heads split the width evenly")
    return LMConfig(vocab_size=llama["vocab_size"], width=width, layers=llama["num_hidden_layers"],
                    heads=heads, kv_heads=llama.get("num_key_value_heads") or heads,
                    mlp_width=llama["intermediate_size"], max_length=llama.get("max_position_embeddings", 2048),
                    norm_eps=llama.get("rms_norm_eps", 1e-6), rope_theta=theta,
                    tie_embeddings=llama.get("tie_word_embeddings", False))


def save_lm_checkpoint(model: LanguageModel, folder: str | os.PathLike) -> Path:
    """Write the folder LlamaForCausalLM.from_pretrained reads."""
    state = to_llama_state_dict(model)
    if model.config.tie_embeddings:
        state.pop(TIED)  # one tensor under two names cannot be stored twice in safetensors
    return write_checkpoint(folder, llama_config(model.config), state)


def load_lm_checkpoint(folder: str | os.PathLike) -> LanguageModel:
    """A LanguageModel from a LlamaForCausalLM checkpoint folder."""
    folder = Path(folder)
    model = LanguageModel(lm_config_from_llama(read_config(folder)))
    return load_llama_state_dict(model, read_weights(folder))
