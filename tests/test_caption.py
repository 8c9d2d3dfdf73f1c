"""The captioners: the Transformer decoder equals torch.nn.TransformerDecoder with the same
weights, its KV cache changes nothing, and the LSTM decoder's attention is a distribution."""

import pytest
import torch
import torch.nn as nn

from minimodal.caption import Captioner, batch_sampler, caption_loss
from minimodal.decoder import TransformerDecoder, TransformerDecoderConfig
from minimodal.lstm_decoder import LSTMDecoder, LSTMDecoderConfig
from minimodal.vocab import CaptionVocab, caption_words, join_words
from minimodal.data.shapes import ShapesConfig, ShapesWorld
from minimodal.decoding import beam_search, greedy_decode
from minimodal.vit import VisionConfig

WIDTH, HEADS, LAYERS, VOCAB, PATCHES = 32, 4, 2, 13, 9


def reference_decoder(seed: int = 0) -> nn.TransformerDecoder:
    """torch's pre-LN decoder with every weight random (LayerNorm gains and biases included,
    so that a swapped norm or a misplaced bias shows)."""
    torch.manual_seed(seed)
    layer = nn.TransformerDecoderLayer(WIDTH, HEADS, dim_feedforward=3 * WIDTH, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
    reference = nn.TransformerDecoder(layer, LAYERS, norm=nn.LayerNorm(WIDTH)).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.ndim == 1 and p.shape[0] == WIDTH else 0.0))
    return reference


def decoder_like(reference: nn.TransformerDecoder, fused: bool = True) -> TransformerDecoder:
    config = TransformerDecoderConfig(vocab_size=VOCAB, width=WIDTH, layers=LAYERS, heads=HEADS, mlp_width=3 * WIDTH, max_length=12, fused=fused)
    decoder = TransformerDecoder(config).eval()
    decoder.load_from_torch(reference)
    return decoder


def inputs(seed: int = 0, batch: int = 3, length: int = 7, device: torch.device | str = "cpu"):
    """Token ids and encoder memory, drawn on the CPU and moved to ``device``."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(VOCAB, (batch, length), generator=g)
    memory = torch.randn(batch, PATCHES, WIDTH, generator=g)
    return tokens.to(device), memory.to(device)


def causal(length: int, device: torch.device | None = None) -> torch.Tensor:
    return nn.Transformer.generate_square_subsequent_mask(length, device)


@pytest.mark.parametrize("fused", [True, False])
def test_transformer_decoder_equals_torch_with_copied_weights(fused, device):
    reference = reference_decoder().to(device)
    decoder = decoder_like(reference, fused).to(device)
    tokens, memory = inputs(device=device)
    with torch.no_grad():
        x = decoder.embed(tokens)
        expected = reference(x, memory, tgt_mask=causal(tokens.shape[1], device), tgt_is_causal=True)
        torch.testing.assert_close(decoder.decode(x, memory), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(decoder(tokens, memory), decoder.head(expected), atol=1e-5, rtol=0)


def test_cross_attention_map_equals_torch_attention_weights(device):
    reference = reference_decoder(1).to(device)
    decoder = decoder_like(reference, fused=True).to(device)
    tokens, memory = inputs(1, device=device)
    mask = causal(tokens.shape[1], device)
    with torch.no_grad():
        x = decoder.embed(tokens)
        for layer in reference.layers[:-1]:
            x = layer(x, memory, tgt_mask=mask)
        last = reference.layers[-1]
        x = x + last.self_attn(last.norm1(x), last.norm1(x), last.norm1(x), attn_mask=mask, need_weights=False)[0]
        _, expected = last.multihead_attn(last.norm2(x), memory, memory, need_weights=True)  # head mean
        ours = decoder.cross_attention(tokens, memory)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.sum(-1), torch.ones(3, 7, device=device), atol=1e-5, rtol=0)


def test_cached_steps_give_the_teacher_forced_logits(device):
    decoder = decoder_like(reference_decoder(2)).to(device)
    tokens, memory = inputs(2, length=10, device=device)
    with torch.no_grad():
        expected = decoder(tokens, memory)                      # (B, T, V), all positions at once
        state, stepped = decoder.start(memory), []
        for t in range(tokens.shape[1]):
            logits, state = decoder.step(tokens[:, t], state)   # one position, keys and values cached
            stepped.append(logits)
    torch.testing.assert_close(torch.stack(stepped, dim=1), expected, atol=1e-5, rtol=0)
    assert state["words"].layers[0].keys.shape == (3, HEADS, 10, WIDTH // HEADS)


def greedy_without_cache(decoder: TransformerDecoder, memory: torch.Tensor, bos: int, eos: int,
                         max_length: int) -> list[int]:
    """Greedy decoding that runs the whole prefix through the decoder again at every step."""
    tokens = [bos]
    with torch.no_grad():
        while len(tokens) <= max_length:
            word = int(decoder(torch.tensor([tokens], device=memory.device), memory)[0, -1].argmax())
            if word == eos:
                break
            tokens.append(word)
    return tokens[1:]


def test_cached_decoding_equals_uncached_token_for_token(device):
    decoder = decoder_like(reference_decoder(3)).to(device)
    _, memory = inputs(3, batch=8, device=device)
    cached = greedy_decode(decoder, memory, bos=2, eos=3, max_length=11)
    uncached = [greedy_without_cache(decoder, memory[i:i + 1], 2, 3, 11) for i in range(8)]
    assert cached == uncached
    assert sum(map(len, cached)) > 20, "captions long enough that the cache is used"


def small_vision(width: int = 16) -> VisionConfig:
    return VisionConfig(image_size=16, patch_size=4, width=width, layers=1, heads=2, embed_dim=8)


def lstm_decoder(seed: int = 0) -> LSTMDecoder:
    torch.manual_seed(seed)
    return LSTMDecoder(LSTMDecoderConfig(vocab_size=VOCAB, memory_width=WIDTH, embed_dim=8, hidden_size=24,
                                         attention_dim=12)).eval()


def test_lstm_decoder_shapes_and_attention_weights():
    decoder = lstm_decoder()
    tokens, memory = inputs(4, batch=5, length=6)
    with torch.no_grad():
        logits, weights = decoder.run(tokens, memory)
    assert logits.shape == (5, 6, VOCAB) and weights.shape == (5, 6, PATCHES)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(5, 6), atol=1e-6, rtol=0)
    assert (weights[:, 1:] - weights[:, :1]).abs().max() > 1e-3, "where it looks depends on what it has said"


def test_lstm_steps_equal_the_teacher_forced_run(device):
    decoder = lstm_decoder(1).to(device)
    tokens, memory = inputs(5, batch=4, length=5, device=device)
    with torch.no_grad():
        expected = decoder(tokens, memory)
        state, stepped = decoder.start(memory), []
        for t in range(5):
            logits, state = decoder.step(tokens[:, t], state)
            stepped.append(logits)
    torch.testing.assert_close(torch.stack(stepped, dim=1), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_beam_width_one_equals_greedy_on_both_decoders(kind, device):
    decoder = (lstm_decoder(2) if kind == "lstm" else decoder_like(reference_decoder(4))).to(device)
    _, memory = inputs(6, batch=6, device=device)
    greedy = greedy_decode(decoder, memory, bos=2, eos=3, max_length=10)
    beams = [beam_search(decoder, memory[i:i + 1], bos=2, eos=3, beam_width=1, max_length=10) for i in range(6)]
    assert beams == greedy
    wide = beam_search(decoder, memory[:1], bos=2, eos=3, beam_width=4, max_length=10)
    assert all(0 <= t < VOCAB and t != 3 for t in wide)


def test_load_from_torch_refuses_other_arrangements():
    post_ln = nn.TransformerDecoder(nn.TransformerDecoderLayer(WIDTH, HEADS, 3 * WIDTH, batch_first=True,
                                                               activation="gelu"), LAYERS, norm=nn.LayerNorm(WIDTH))
    with pytest.raises(ValueError, match="norm_first=True"):
        decoder_like(post_ln)
    deeper = nn.TransformerDecoder(reference_decoder().layers[0], LAYERS + 1, norm=nn.LayerNorm(WIDTH))
    with pytest.raises(RuntimeError, match=r"Unexpected key\(s\).*blocks\.2\."):
        decoder_like(deeper)


def test_positions_past_max_length_are_an_error():
    decoder = decoder_like(reference_decoder())
    tokens, memory = inputs(length=13)
    with pytest.raises(ValueError, match="position 12 is past the decoder's 12 positions"):
        decoder(tokens, memory)


def test_captioner_needs_matching_widths_and_checks_pixels():
    with pytest.raises(ValueError, match="memory of width 32 but the encoder's patch features have width 16"):
        Captioner(small_vision(16), lstm_decoder())
    model = Captioner(small_vision(WIDTH), lstm_decoder())
    tokens, _ = inputs()
    assert model(torch.rand(3, 3, 16, 16), tokens).shape == (3, 7, VOCAB)
    assert model.encoder(torch.rand(3, 3, 16, 16)).shape == (3, 16, WIDTH)
    with pytest.raises(ValueError, match=r"expected pixels of shape \(batch, 3, 16, 16\)"):
        model(torch.rand(3, 3, 32, 32), tokens)


def test_vocab_round_trips_shapes_world_captions():
    captions = ShapesWorld(ShapesConfig(seed=1)).sample("train", 40).captions
    vocab = CaptionVocab.build(captions)
    assert vocab.words[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert (vocab.pad, vocab.unk, vocab.bos, vocab.eos) == (0, 1, 2, 3)
    for caption in captions:
        ids = vocab.encode(caption)
        assert ids[0] == vocab.bos and ids[-1] == vocab.eos
        assert vocab.decode(ids) == caption == join_words(caption_words(caption))
    assert vocab.decode([vocab.ids["a"], vocab.eos, vocab.ids["red"]]) == "a"
    assert vocab.encode("a zebra")[2] == vocab.unk
    with pytest.raises(ValueError, match="has no words"):
        vocab.encode(" ?! ")


def test_padding_does_not_change_the_loss():
    torch.manual_seed(0)
    model = Captioner(small_vision(WIDTH), lstm_decoder())
    pixels = torch.rand(4, 3, 16, 16)
    ids = torch.randint(4, VOCAB, (4, 6))
    ids[:, 0], ids[:, -1] = 2, 3
    ids[0, 3:] = torch.tensor([3, 0, 0])                                    # a shorter caption, padded
    padded = torch.cat([ids, torch.zeros(4, 3, dtype=torch.long)], dim=1)   # three more pad columns
    torch.testing.assert_close(caption_loss(model, (pixels, padded)), caption_loss(model, (pixels, ids)))


def test_batches_are_a_function_of_the_step_and_trimmed():
    pixels = torch.rand(10, 3, 16, 16)
    ids = torch.zeros(10, 9, dtype=torch.long)
    ids[:, :4] = 5
    batch_at = batch_sampler(pixels, ids, batch_size=6, seed=1)
    (p1, i1), (p2, i2) = batch_at(3), batch_at(3)
    assert torch.equal(p1, p2) and torch.equal(i1, i2) and i1.shape == (6, 4)
    assert not torch.equal(batch_at(4)[1], i1) or not torch.equal(batch_at(4)[0], p1)
