"""minimodal's causal text encoder against transformers' CLIPTextModel with the same weights."""

import pytest
import torch

from clip_reference import SMALL_SHAPES, assert_tower_matches_transformers, sample_inputs, twins
from minimodal.check import assert_close
from minimodal.clip import CLIPConfig
from minimodal.text import TextConfig, TextTransformer, eot_positions, pool_at_eot

EOT = 9


def test_eot_position_is_the_first_end_of_text_even_when_padding_repeats_it():
    ids = torch.tensor([[5, 3, EOT, EOT, EOT], [5, 3, 1, 2, EOT], [EOT, 0, 0, 0, 0]])
    assert eot_positions(ids, EOT).tolist() == [2, 4, 0]


def test_pool_at_eot_picks_each_rows_features():
    x = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    ids = torch.tensor([[1, EOT, 0, 0], [1, 2, 3, EOT]])
    torch.testing.assert_close(pool_at_eot(x, ids, EOT), torch.stack([x[0, 1], x[1, 3]]))


def test_missing_end_of_text_names_the_row():
    ids = torch.tensor([[1, EOT], [1, 2]])
    with pytest.raises(ValueError, match="row 1 .* no end-of-text token"):
        eot_positions(ids, EOT)


@pytest.mark.parametrize("ids, message", [
    (torch.tensor([[1, 2, 300]]), r"must lie in \[0, 100\)"),
    (torch.tensor([[1] * 16 + [99]]), "more than the context length 16"),  # ends past the context
    (torch.ones(2, 3), "integer token ids"),
])
def test_bad_ids_are_refused_with_a_reason(ids, message):
    encoder = TextTransformer(TextConfig(vocab_size=100, context_length=16, width=16, layers=1, heads=2, embed_dim=8,
                                         eot_token_id=99))
    with pytest.raises(ValueError, match=message):
        encoder(ids)


def test_a_token_never_sees_the_tokens_after_it():
    torch.manual_seed(0)
    encoder = TextTransformer(TextConfig(vocab_size=100, context_length=16, width=32, layers=2, heads=2, embed_dim=8,
                                         eot_token_id=99)).eval()
    ids = torch.randint(0, 99, (1, 10))
    changed = ids.clone()
    changed[0, 6:] = (changed[0, 6:] + 1) % 99
    with torch.no_grad():
        before, after = encoder.hidden_states(ids)[-1], encoder.hidden_states(changed)[-1]
    torch.testing.assert_close(after[:, :6], before[:, :6])
    assert not torch.allclose(after[:, 6:], before[:, 6:])


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("shape", sorted(SMALL_SHAPES))
def test_small_text_encoders_match_transformers(shape, attn, device):
    assert_tower_matches_transformers(shape, "text", attn, device)


def test_short_captions_are_cut_at_the_last_end_of_text_and_still_match_transformers(device):
    """forward computes only up to the batch's last end-of-text token; transformers computes all 16."""
    config = CLIPConfig(*SMALL_SHAPES["tiny"])
    mine, reference = twins(config, device=device)
    _, ids = sample_inputs(config, batch=4, device=device)
    ids[:, 7:] = 0
    ids[:, 6] = config.text.eot_token_id  # every caption ends by position 6; row 3 earlier still
    ids[3, 3:] = 0
    ids[3, 2] = config.text.eot_token_id
    with torch.no_grad():
        expected = reference.get_text_features(input_ids=ids).pooler_output
        assert_close(mine.encode_text(ids), expected, what="embeddings of short captions",
                     against="CLIPModel.get_text_features", atol=1e-5)
