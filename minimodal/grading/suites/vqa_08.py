"""Graded checks for exercises/08_vqa_lstm.ipynb: the LSTM cell step, the forget bias, the LSTM over a
padded batch, fusion, the classifier.

Each check compares the learner's function with minimodal's own on random inputs from the
seed; when they differ, it tries the classic mistakes (gates in another order, the bias in
the wrong rows, padding read as if it were words, the concatenation the wrong way round,
the ReLUs left out) and names the one that matches.
"""

from __future__ import annotations

import itertools

import torch

from minimodal.grading.checks import Check, expect_close, expect_like, expect_tensor, in_learner
from minimodal.lstm import LSTM, LSTMCell, LSTMConfig, init_forget_bias, lstm_cell
from minimodal.vqa import FusedClassifier, VQAConfig, fuse

NOTEBOOK = "08_vqa_lstm"
GATES = ("input", "forget", "candidate", "output")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _cell_inputs(g: torch.Generator, batch: int = 3, inputs: int = 4, hidden: int = 5):
    x, h, c = (torch.randn(batch, n, generator=g) for n in (inputs, hidden, hidden))
    weights = (torch.randn(4 * hidden, inputs, generator=g), torch.randn(4 * hidden, hidden, generator=g),
               torch.randn(4 * hidden, generator=g), torch.randn(4 * hidden, generator=g))
    return x, h, c, weights


def _permuted(weights, order):
    """The weights with their four gate blocks rearranged: block k becomes block order[k]."""
    return tuple(torch.cat([w.chunk(4, dim=0)[k] for k in order]) for w in weights)


def _explain_cell(fn, x, h, c, weights) -> str:
    """Which classic mistake the learner's (h, c) looks like, or ''."""
    got_h, got_c = (t.detach() for t in fn(x, h, c, *weights))
    for order in itertools.permutations(range(4)):
        if order == (0, 1, 2, 3):
            continue
        want_h, want_c = lstm_cell(x, h, c, *_permuted(weights, order))
        if torch.allclose(got_h, want_h, atol=1e-5) and torch.allclose(got_c, want_c, atol=1e-5):
            return (f"your gates read the blocks in the order {', '.join(GATES[k] for k in order)}; "
                    "torch stacks them input, forget, candidate, output")
    i, f, g, o = (x @ weights[0].T + weights[2] + h @ weights[1].T + weights[3]).chunk(4, dim=1)
    if torch.allclose(got_c, torch.sigmoid(f) * c + torch.sigmoid(i) * torch.sigmoid(g), atol=1e-5):
        return "the candidate g takes a tanh, not a sigmoid: it writes values in (-1, 1)"
    if torch.allclose(got_c, torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g), atol=1e-5):
        return "c' is right but h' is not: h' = o * tanh(c'), using the new memory"
    return ""


def _check_cell_values(fn, seed: int) -> None:
    g = _gen(seed)
    for batch, inputs, hidden in [(1, 1, 1), (3, 4, 5), (2, 6, 3)]:
        x, h, c, weights = _cell_inputs(g, batch, inputs, hidden)
        want_h, want_c = lstm_cell(x, h, c, *weights)
        result = fn(x, h, c, *weights)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise AssertionError(f"lstm_cell should return the pair (h, c), got {type(result).__name__}")
        try:
            expect_close(result[0], want_h, what=f"h' for batch {batch}, hidden {hidden}")
            expect_close(result[1], want_c, what=f"c' for batch {batch}, hidden {hidden}")
        except AssertionError as error:
            hint = _explain_cell(fn, x, h, c, weights)
            raise AssertionError(f"{error}. {hint}" if hint else str(error)) from None


def _three_steps(fn, x_steps, h, c, weights):
    """In the learner's process: three steps through ``fn``, then backward; h, and each weight's gradient."""
    leaves = [w.clone().requires_grad_(True) for w in weights]
    state = (h, c)
    for x_t in x_steps:
        state = fn(x_t, *state, *leaves)
    if not (isinstance(state, tuple) and len(state) == 2 and all(isinstance(t, torch.Tensor) for t in state)
            and state[0].requires_grad):
        return state, None
    (state[0].sum() + state[1].pow(2).sum()).backward()
    return state, [leaf.grad for leaf in leaves]


def _check_cell_gradients(fn, seed: int) -> None:
    """Three steps through the learner's cell: a gradient reaches every weight.

    Whether the values are right is the other check's business; this one fails only where
    the computation leaves autograd (a detach, .item(), .data, torch.no_grad()).
    """
    g = _gen(seed)
    x, h, c, weights = _cell_inputs(g)
    x_steps = [x] + [torch.randn(x.shape, generator=g) for _ in range(2)]
    state, grads = in_learner(fn, _three_steps, x_steps, h, c, weights)
    if not isinstance(state, tuple) or len(state) != 2:
        raise AssertionError(f"lstm_cell should return the pair (h, c), got {type(state).__name__}")
    expect_tensor(state[0], shape=h.shape, what="h after three steps")
    if grads is None:
        raise AssertionError("no gradient reached the weights: h after three steps does not depend on "
                             "them for autograd; keep the computation in torch (no .detach(), .item(), "
                             ".data or torch.no_grad())")
    for name, grad in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), grads):
        if grad is None or not torch.isfinite(grad).all() or not grad.abs().sum() > 0:
            raise AssertionError(f"no gradient reached {name}: keep the computation in torch "
                                 "(no .detach(), .item(), .data or torch.no_grad())")


def _biased(fn, cell: LSTMCell, value: float) -> dict:
    """In the learner's process: the cell's weights after the learner's init_forget_bias."""
    fn(cell, value)
    return {name: tensor.detach() for name, tensor in cell.state_dict().items()}


def _check_forget_bias(fn, seed: int) -> None:
    torch.manual_seed(seed)
    for hidden, value in [(1, 1.0), (5, 2.5), (3, -0.5)]:
        cell, expected = LSTMCell(2, hidden), LSTMCell(2, hidden)
        expected.load_state_dict(cell.state_dict())
        init_forget_bias(expected, value)
        got = in_learner(fn, _biased, cell, value)
        H = hidden
        total = got["bias_ih"] + got["bias_hh"]
        if not torch.allclose(total[H:2 * H], torch.full((H,), value)):
            if torch.allclose(total[:H], torch.full((H,), value)):
                raise AssertionError(f"the input gate's rows got the bias: with torch's order "
                                     f"(input, forget, candidate, output) the forget rows are "
                                     f"{H}:{2 * H}, the second quarter")
            if torch.allclose(total[H:2 * H], torch.full((H,), 2 * value)):
                raise AssertionError("the forget gate adds bias_ih and bias_hh, so setting both to "
                                     f"{value} gives {2 * value}: put it in one and zero the other")
            raise AssertionError(f"bias_ih + bias_hh over the forget rows should be {value}, "
                                 f"got {total[H:2 * H].tolist()}")
        for name in ("bias_ih", "bias_hh", "weight_ih", "weight_hh"):
            if not torch.allclose(got[name], getattr(expected, name).detach()):
                raise AssertionError(f"{name} changed outside the forget gate's rows: only "
                                     f"rows {H}:{2 * H} of the biases may change")


def _padded_batch(seed: int, lengths: list[int], inputs: int = 3, hidden: int = 4):
    """A random cell and a right-padded batch (B, T, I) whose padding holds random values, not zeros:
    a row that reads its padding then ends in another state."""
    torch.manual_seed(seed)
    cell = LSTMCell(inputs, hidden)
    x = torch.randn(len(lengths), max(lengths), inputs, generator=_gen(seed))
    return cell, x, torch.tensor(lengths)


def _state_after(cell: LSTMCell, x: torch.Tensor, lengths: torch.Tensor):
    """Each row's (h, c) after its first ``lengths[b]`` steps, any count from 0 up: the mistakes' answers."""
    h = c = x.new_zeros(len(x), cell.hidden_size)
    for t in range(x.shape[1]):
        real = (t < lengths)[:, None]                                   # (B, 1)
        new_h, new_c = cell(x[:, t], (h, c))
        h, c = torch.where(real, new_h, h), torch.where(real, new_c, c)
    return h, c


def _one_state_for_all_rows(cell: LSTMCell, x: torch.Tensor, lengths: torch.Tensor):
    """The rows read one after another with one state, never reset: (h, c) after each row."""
    h = c = x.new_zeros(1, cell.hidden_size)
    states = []
    for row, length in zip(x, lengths.tolist()):
        for t in range(length):
            h, c = cell(row[t:t + 1], (h, c))
        states.append((h[0], c[0]))
    return tuple(torch.stack(part) for part in zip(*states))


def _batch_mistakes(cell, x, lengths, part: int) -> list[tuple[str, torch.Tensor]]:
    """(hint, h or c as that mistake gives it), part 0 for h and 1 for c."""
    T = x.shape[1]
    return [("every row ran all T steps: the padding after a row's end changed its state; past its "
             "length a row must keep the state it had", _state_after(cell, x, torch.full_like(lengths, T))[part]),
            ("each row stops one step early: a row of length n reads steps 0 to n - 1",
             _state_after(cell, x, lengths - 1)[part]),
            ("each row reads one step of padding: a row of length n reads steps 0 to n - 1",
             _state_after(cell, x, (lengths + 1).clamp(max=T))[part]),
            ("each row starts from the state the row before it ended in: every row starts from zeros, "
             "on its own", _one_state_for_all_rows(cell, x, lengths)[part])]


@torch.no_grad()
def _expect_final_state(fn, seed: int, lengths: list[int]) -> None:
    """The learner's (h, c) against minimodal's LSTM (itself equal to torch.nn.LSTM on packed sequences)."""
    cell, x, lengths = _padded_batch(seed, lengths)
    lstm = LSTM(LSTMConfig(input_size=cell.weight_ih.shape[1], hidden_size=cell.hidden_size))
    lstm.layers[0].load_state_dict(cell.state_dict())
    _, (h, c) = lstm(x, lengths)                                        # each (1, B, H)
    result = fn(cell, x.clone(), lengths.clone())
    what = f"for lengths {lengths.tolist()}"
    if not (isinstance(result, tuple) and len(result) == 2):
        raise AssertionError(f"lstm_over_batch should return the pair (h, c), got {type(result).__name__}")
    for part, (name, got, want) in enumerate(zip("hc", result, (h[0], c[0]))):
        expect_like(got, want, lambda: _batch_mistakes(cell, x, lengths, part), f"{name} {what}")


def _check_batch_full(fn, seed: int) -> None:
    for case, lengths in enumerate([[1], [4, 4, 4], [6, 6]]):
        _expect_final_state(fn, seed * 10 + case, lengths)


def _check_batch_padded(fn, seed: int) -> None:
    g = _gen(seed)
    for case in range(3):
        T = 5 + case
        lengths = [1, T] + torch.randint(1, T + 1, (3,), generator=g).tolist()
        _expect_final_state(fn, seed * 10 + case, lengths)


def _check_fuse(fn, seed: int) -> None:
    g = _gen(seed)
    v, q = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    expect_close(fn(v, q, "product"), fuse(v, q, "product"), what="product fusion of (4, 6) features")
    got = expect_tensor(fn(v, q, "concat"), what="concat fusion of (4, 6) features")
    if got.shape == (8, 6):
        raise AssertionError("concat fusion has shape (8, 6): join the features (dim=-1), not the batch")
    if got.shape == (4, 12) and torch.equal(got, torch.cat([q, v], dim=-1)):
        raise AssertionError("concat fusion puts the question first: the classifier expects "
                             "[image, question]")
    expect_close(got, fuse(v, q, "concat"), what="concat fusion of (4, 6) features")


def _classifier_mistakes(classifier: FusedClassifier, v, q) -> list[tuple[str, torch.Tensor]]:
    """(hint, the logits that mistake gives): the ReLUs left out, or moved past the fusion."""
    image, question = classifier.image_proj(v), classifier.question_proj(q)
    return [("the projections need their ReLUs: relu(image_proj(v)) and relu(question_proj(q)), then fuse",
             classifier.head(fuse(image, question, classifier.fusion))),
            ("the ReLUs go on each projection, before the fusion, not on the fused vector",
             classifier.head(torch.relu(fuse(image, question, classifier.fusion))))]


def _check_classifier(fn, seed: int) -> None:
    torch.manual_seed(seed)
    g = _gen(seed)
    for fusion in ("product", "concat"):
        config = VQAConfig(vocab_size=5, num_answers=7, image_dim=6, question_dim=5, fused_dim=8,
                           fusion=fusion)
        classifier = FusedClassifier(config)
        v, q = torch.randn(3, 6, generator=g), torch.randn(3, 5, generator=g)
        with torch.no_grad():
            expected = classifier(v, q)
            try:
                got = fn(classifier, v, q)
            except NotImplementedError:
                raise
            except RuntimeError as error:
                raise AssertionError(f"with {fusion} fusion the classifier raised: {error}") from None
            expect_like(got, expected, lambda: _classifier_mistakes(classifier, v, q),
                        f"answer logits with {fusion} fusion")


OWN = {  # minimodal's functions that make up each answer: a learner's function must not call them
    "lstm_cell": (lstm_cell, LSTMCell.forward),
    "init_forget_bias": (init_forget_bias,),
    "lstm_over_batch": (LSTM.forward,),
    "fuse": (fuse,),
    "classify": (FusedClassifier.forward, fuse),
}


CHECKS = [  # milliseconds each; the classifier check, which builds models, keeps the default limit
    Check("one LSTM step equals torch's", "lstm_cell", 3, _check_cell_values, timeout=5,
          references=OWN["lstm_cell"]),
    Check("gradients reach every weight through three steps", "lstm_cell", 2, _check_cell_gradients,
          timeout=5, references=OWN["lstm_cell"]),
    Check("forget bias in the forget gate's rows, once", "init_forget_bias", 2, _check_forget_bias,
          timeout=5, references=OWN["init_forget_bias"]),
    Check("rows of full length: the state after the last step", "lstm_over_batch", 2, _check_batch_full,
          timeout=5, references=OWN["lstm_over_batch"]),
    Check("right-padded rows: the state after each row's last real step", "lstm_over_batch", 3,
          _check_batch_padded, timeout=5, references=OWN["lstm_over_batch"]),
    Check("product and image-first concatenation", "fuse", 2, _check_fuse, timeout=5, references=OWN["fuse"]),
    Check("fused classifier gives the reference logits", "classify", 3, _check_classifier,
          references=OWN["classify"]),
]
