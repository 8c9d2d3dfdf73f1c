"""Attention and blocks against torch.nn; the sentence encoder against real all-MiniLM-L6-v2."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from clip_reference import mismatch_message
from minimodal.check import assert_close, assert_close_layers
from minimodal.mlp import MLP, quick_gelu
from minimodal.transformer import (Block, MultiHeadAttention, TransformerConfig, attention, attention_weights,
                                   causal_mask, padding_mask, set_fused_attention)


def copy_from_torch_mha(mine: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    """Split torch's stacked in_proj into our q, k, v projections."""
    with torch.no_grad():
        for proj, w, b in zip((mine.q_proj, mine.k_proj, mine.v_proj),
                              theirs.in_proj_weight.chunk(3), theirs.in_proj_bias.chunk(3)):
            proj.weight.copy_(w)
            proj.bias.copy_(b)
        mine.out_proj.load_state_dict(theirs.out_proj.state_dict())


def test_written_out_attention_equals_torch_sdpa_with_and_without_mask():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)
    mask = torch.rand(2, 1, 5, 7) > 0.3
    mask[..., 0] = True  # every query may see at least one key
    for m in (None, mask):
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        torch.testing.assert_close(attention(q, k, v, m, fused=False), expected, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(attention(q, k, v, m, fused=True), expected, atol=1e-6, rtol=1e-5)


def test_attention_weights_are_a_distribution_that_ignores_masked_keys():
    torch.manual_seed(0)
    q, k = torch.randn(1, 4, 6), torch.randn(1, 4, 6)
    weights = attention_weights(q, k, causal_mask(4))
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 4))
    assert (weights.triu(diagonal=1) == 0).all()


def test_causal_mask_lets_position_i_see_0_to_i():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]


def test_padding_mask_shape_and_bad_input():
    assert padding_mask(torch.tensor([[1, 1, 0]])).shape == (1, 1, 1, 3)
    with pytest.raises(ValueError, match=r"\(batch, length\)"):
        padding_mask(torch.ones(2, 1, 3))


@pytest.mark.parametrize("fused", [True, False])
def test_self_attention_with_padding_and_causal_masks_matches_torch(fused, device):
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    mine = MultiHeadAttention(16, 4, fused=fused)
    copy_from_torch_mha(mine, theirs)
    mine, theirs = mine.to(device), theirs.to(device)
    x = torch.randn(3, 6, 16).to(device)
    real = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4], device=device)
    expected, _ = theirs(x, x, x, key_padding_mask=real == 0, need_weights=False)
    assert_close(mine(x, mask=padding_mask(real)), expected, what="padded self-attention",
                 against="torch.nn.MultiheadAttention")
    expected, _ = theirs(x, x, x, attn_mask=~causal_mask(6, device), need_weights=False)
    assert_close(mine(x, mask=causal_mask(6, device)), expected, what="causal self-attention",
                 against="torch.nn.MultiheadAttention")


def test_cross_attention_takes_keys_and_values_from_the_context(device):
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(16, 2, batch_first=True).eval()
    mine = MultiHeadAttention(16, 2)
    copy_from_torch_mha(mine, theirs)
    mine, theirs = mine.to(device), theirs.to(device)
    x, context = torch.randn(2, 3, 16).to(device), torch.randn(2, 9, 16).to(device)
    expected, expected_weights = theirs(x, context, context, average_attn_weights=False)
    assert_close(mine(x, context), expected, what="cross-attention", against="torch.nn.MultiheadAttention")
    assert_close(mine.attention_map(x, context), expected_weights, what="cross-attention weights",
                 against="torch.nn.MultiheadAttention")


def test_width_not_divisible_by_heads_is_refused():
    with pytest.raises(ValueError, match="not divisible by heads"):
        MultiHeadAttention(10, 3)


def test_quick_gelu_and_gelu_match_transformers_activations():
    from transformers.activations import ACT2FN
    x = torch.linspace(-6, 6, 101)
    torch.testing.assert_close(quick_gelu(x), ACT2FN["quick_gelu"](x))
    torch.testing.assert_close(MLP(4, 8, "gelu").activation(x), ACT2FN["gelu"](x))
    with pytest.raises(ValueError, match="unknown activation 'relu6'"):
        MLP(4, 8, "relu6")


def twin_blocks(pre_norm: bool, device: torch.device | str = "cpu") -> tuple[Block, nn.TransformerEncoderLayer]:
    """Our Block and a torch.nn.TransformerEncoderLayer holding the same weights (seeds torch with 0),
    on ``device``."""
    torch.manual_seed(0)
    theirs = nn.TransformerEncoderLayer(16, 4, 40, dropout=0.0, activation="gelu",
                                        batch_first=True, norm_first=pre_norm).eval()
    mine = Block(TransformerConfig(width=16, layers=1, heads=4, mlp_width=40, pre_norm=pre_norm)).eval()
    copy_from_torch_mha(mine.attn, theirs.self_attn)
    with torch.no_grad():
        for ours, torch_module in ((mine.mlp.fc1, theirs.linear1), (mine.mlp.fc2, theirs.linear2),
                                   (mine.ln_1, theirs.norm1), (mine.ln_2, theirs.norm2)):
            torch_module.weight.add_(0.1 * torch.randn_like(torch_module.weight))
            ours.load_state_dict(torch_module.state_dict())
    return mine.to(device), theirs.to(device)


@pytest.mark.parametrize("pre_norm", [True, False])
def test_block_matches_torch_transformer_encoder_layer(pre_norm, device):
    mine, theirs = twin_blocks(pre_norm, device)
    x = torch.randn(2, 5, 16).to(device)
    real = torch.tensor([[1] * 5, [1] * 3 + [0] * 2], device=device)
    rows = torch.tensor([[4, 0], [2, 1]], device=device)  # a few real positions of each sequence
    with torch.no_grad():
        expected = theirs(x, src_key_padding_mask=real == 0)
        actual = mine(x, padding_mask(real))
        at_rows = mine(x, padding_mask(real), rows)
    # torch's fast path may zero the padded rows: compare the real positions
    arrangement = f"{'pre' if pre_norm else 'post'}-LN block"
    assert_close(actual[real.bool()], expected[real.bool()],
                 what=arrangement, against="torch.nn.TransformerEncoderLayer")
    assert_close(at_rows, expected[torch.arange(2, device=device)[:, None], rows],
                 what=f"{arrangement} at a few rows", against="torch.nn.TransformerEncoderLayer at those rows")


def test_mean_pool_averages_only_real_tokens():
    from minimodal.bert import mean_pool
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    torch.testing.assert_close(mean_pool(x, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0]]))


# ------------------------------------------------------------ real pretrained all-MiniLM-L6-v2

SENTENCES = ["A cat sleeps on the warm windowsill.",
             "Attention lets every token look at every other token, weighted by similarity.",
             "Hi!",
             "Two dogs run across a snowy field while a third one watches them from a wooden fence."]


@pytest.fixture(scope="module")
def minilm():
    """(sentence-transformers model, its tokenizer, minimodal's encoder with the same weights)."""
    from sentence_transformers import SentenceTransformer

    from minimodal.convert_bert import load_sentence_encoder, minilm_folder
    folder = minilm_folder()
    reference = SentenceTransformer(str(folder), device="cpu")
    return reference, reference.tokenizer, load_sentence_encoder(folder).eval()


@pytest.mark.parametrize("fused", [True, False])
def test_minilm_sentence_embeddings_match_sentence_transformers(minilm, fused, device):
    reference, tokenizer, mine = minilm
    reference.to(device)
    set_fused_attention(mine.to(device), fused)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt").to(device)
    assert (batch["attention_mask"] == 0).any(), "the batch should contain padding"
    with torch.no_grad():
        pooled = mine(batch["input_ids"], batch["attention_mask"])
        features = reference[1](reference[0](dict(batch)))  # the Transformer and mean Pooling modules
    assert_close(pooled, features["sentence_embedding"], what="mean-pooled MiniLM embeddings",
                 against="sentence-transformers", atol=1e-5)
    expected = reference.encode(SENTENCES, convert_to_tensor=True, show_progress_bar=False)
    assert_close(F.normalize(pooled, dim=-1), expected, what="normalized MiniLM embeddings",
                 against="SentenceTransformer.encode", atol=1e-5)


def test_minilm_hidden_states_match_transformers_bert(minilm, device):
    reference, tokenizer, mine = minilm
    bert, mine = reference[0].auto_model.to(device), mine.to(device)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt").to(device)
    with torch.no_grad():
        expected = bert(**batch, output_hidden_states=True).hidden_states
        actual = mine.hidden_states(batch["input_ids"], batch["attention_mask"])
    assert_close_layers(actual, expected, what="MiniLM hidden states", against="transformers BertModel")


def test_bert_loader_is_strict(minilm):
    from minimodal.convert import read_weights
    from minimodal.convert_bert import load_bert_state_dict, minilm_folder
    state = read_weights(minilm_folder())
    _, _, mine = minilm
    broken = dict(state)
    del broken["encoder.layer.3.attention.self.key.bias"]
    broken["encoder.layer.9.output.dense.weight"] = torch.zeros(1)
    broken["embeddings.word_embeddings.weight"] = state["embeddings.word_embeddings.weight"][:100]
    message = mismatch_message(load_bert_state_dict, mine, broken)
    assert "missing (1): encoder.layer.3.attention.self.key.bias" in message
    assert "unexpected (1): encoder.layer.9.output.dense.weight" in message
    assert "embeddings.word_embeddings.weight (100, 384) (expected (30522, 384))" in message
