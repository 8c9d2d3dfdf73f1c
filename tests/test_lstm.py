"""minimodal's LSTM against torch.nn.LSTM with the same weights: values and gradients."""

import pytest
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from minimodal.lstm import LSTM, LSTMCell, LSTMConfig, init_forget_bias, lstm_cell

ATOL = 1e-5


def twin_lstms(input_size=5, hidden_size=7, num_layers=2, seed=0, device="cpu"):
    """A minimodal LSTM and a torch.nn.LSTM holding the same random weights, on ``device``."""
    torch.manual_seed(seed)
    reference = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
    mine = LSTM(LSTMConfig(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers))
    mine.load_from_torch(reference)
    return mine.to(device), reference.to(device)


def reference_on_padded(reference, x, lengths, state=None):
    """torch.nn.LSTM on a right-padded batch, the standard way: pack, run, unpack."""
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, (h, c) = reference(packed, state)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, (h, c)


def test_cell_step_matches_torch_lstm_cell():
    torch.manual_seed(0)
    reference = nn.LSTMCell(4, 6)
    x, h, c = torch.randn(3, 4), torch.randn(3, 6), torch.randn(3, 6)
    expected_h, expected_c = reference(x, (h, c))
    mine_h, mine_c = lstm_cell(x, h, c, reference.weight_ih, reference.weight_hh,
                               reference.bias_ih, reference.bias_hh)
    torch.testing.assert_close(mine_h, expected_h, atol=ATOL, rtol=0)
    torch.testing.assert_close(mine_c, expected_c, atol=ATOL, rtol=0)


def test_cell_module_has_torch_parameter_shapes():
    cell = LSTMCell(4, 6)
    reference = nn.LSTMCell(4, 6)
    for name, p in reference.named_parameters():
        assert getattr(cell, name).shape == p.shape, name


@pytest.mark.parametrize("num_layers", [1, 3])
def test_full_length_batch_matches_torch(num_layers, device):
    mine, reference = twin_lstms(num_layers=num_layers, device=device)
    x = torch.randn(4, 6, 5).to(device)
    out, (h, c) = mine(x)
    expected_out, (expected_h, expected_c) = reference(x)
    torch.testing.assert_close(out, expected_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(h, expected_h, atol=ATOL, rtol=0)
    torch.testing.assert_close(c, expected_c, atol=ATOL, rtol=0)


def test_padded_batch_matches_packed_torch_values_and_gradients(device):
    mine, reference = twin_lstms(num_layers=2, device=device)
    lengths = torch.tensor([6, 1, 4, 3, 6])  # stays on the CPU: pack_padded_sequence wants it there
    x = torch.randn(5, 6, 5)
    x[torch.arange(6)[None, :] >= lengths[:, None]] = 99.0  # padding that must not leak in
    x = x.to(device)
    state = (torch.randn(2, 5, 7).to(device), torch.randn(2, 5, 7).to(device))
    weights = torch.randn(5, 6, 7).to(device)  # a loss that weighs every output differently

    results = []
    for model, run in [(mine, lambda: mine(x_leaf, lengths, state)),
                       (reference, lambda: reference_on_padded(reference, x_leaf, lengths, state))]:
        x_leaf = x.clone().requires_grad_(True)
        model.zero_grad()
        out, (h, c) = run()
        ((out * weights).sum() + h.pow(2).sum() + c.sin().sum()).backward()
        grads = {name.replace("layers.", "").replace(".", "_"): p.grad for name, p in model.named_parameters()}
        results.append((out, h, c, x_leaf.grad, grads))

    (out, h, c, grad_x, grads), (e_out, e_h, e_c, e_grad_x, e_grads) = results
    torch.testing.assert_close(out, e_out, atol=ATOL, rtol=0)
    assert (out[1, 1:] == 0).all(), "outputs past a sequence's end must be zero"
    torch.testing.assert_close(h, e_h, atol=ATOL, rtol=0)
    torch.testing.assert_close(c, e_c, atol=ATOL, rtol=0)
    torch.testing.assert_close(grad_x, e_grad_x, atol=ATOL, rtol=0)
    assert (grad_x[1, 1:] == 0).all(), "padding must get no gradient"
    assert len(grads) == len(e_grads) == 8
    for name, grad in grads.items():  # ours '0_weight_ih' is torch's 'weight_ih_l0'
        layer, param = name.split("_", 1)
        torch.testing.assert_close(grad, e_grads[f"{param}_l{layer}"], atol=ATOL, rtol=0,
                                   msg=lambda m, name=name: f"gradient of {name}: {m}")


def test_loading_rejects_a_reference_of_another_shape():
    mine = LSTM(LSTMConfig(input_size=5, hidden_size=7, num_layers=2))
    with pytest.raises(RuntimeError, match="Missing key.*layers.1.weight_ih"):
        mine.load_from_torch(nn.LSTM(5, 7, 1, batch_first=True))
    with pytest.raises(RuntimeError, match="size mismatch for layers.0.weight_ih"):
        mine.load_from_torch(nn.LSTM(4, 7, 2, batch_first=True))
    with pytest.raises(ValueError, match="bidirectional=False"):
        mine.load_from_torch(nn.LSTM(5, 7, 2, batch_first=True, bidirectional=True))
    with pytest.raises(ValueError, match="batch_first=True"):
        mine.load_from_torch(nn.LSTM(5, 7, 2))


@pytest.mark.parametrize("lengths, message", [
    (torch.tensor([3, 0]), "between 1 and the padded length 4"),
    (torch.tensor([3, 5]), "between 1 and the padded length 4"),
    (torch.tensor([3, 2, 1]), r"shape \(2,\)"),
])
def test_bad_lengths_are_a_clear_error(lengths, message):
    mine = LSTM(LSTMConfig(input_size=5, hidden_size=7))
    with pytest.raises(ValueError, match=message):
        mine(torch.randn(2, 4, 5), lengths)


def test_bad_input_shape_is_a_clear_error():
    mine = LSTM(LSTMConfig(input_size=5, hidden_size=7))
    with pytest.raises(ValueError, match=r"\(batch, time, 5\)"):
        mine(torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match="length 0"):
        mine(torch.randn(2, 0, 5))


def test_init_forget_bias_touches_only_the_forget_rows():
    cell = LSTMCell(3, 5)
    before = (cell.bias_ih.clone(), cell.bias_hh.clone())
    init_forget_bias(cell, 2.0)
    for after, old in zip((cell.bias_ih, cell.bias_hh), before):
        torch.testing.assert_close(after[:5], old[:5])
        torch.testing.assert_close(after[10:], old[10:])
    torch.testing.assert_close((cell.bias_ih + cell.bias_hh)[5:10], torch.full((5,), 2.0))
