"""The training loop: schedule, decay groups, learning, and a resume that loses nothing."""

import math

import pytest
import torch
import torch.nn as nn

from minimodal.train import TrainConfig, learning_rate, make_optimizer, train


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 32), nn.GELU(), nn.Dropout(0.2), nn.LayerNorm(32), nn.Linear(32, 1))


def batch_at(step: int):
    g = torch.Generator().manual_seed(step)
    x = torch.randn(16, 4, generator=g)
    return x, x.sum(dim=1, keepdim=True)


def mse(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def test_warmup_then_cosine():
    config = TrainConfig(steps=110, lr=1.0, warmup_steps=10, min_lr=0.1)
    assert learning_rate(0, config) == pytest.approx(0.1)
    assert learning_rate(9, config) == pytest.approx(1.0)
    assert learning_rate(10, config) == pytest.approx(1.0)
    assert learning_rate(60, config) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 2)))
    assert learning_rate(110, config) == pytest.approx(0.1)


def test_only_matrices_are_decayed():
    groups = make_optimizer(tiny_model(), TrainConfig(steps=1, weight_decay=0.3)).param_groups
    assert [p.ndim for p in groups[0]["params"]] == [2, 2] and groups[0]["weight_decay"] == 0.3
    assert all(p.ndim == 1 for p in groups[1]["params"]) and groups[1]["weight_decay"] == 0.0


def test_it_learns_and_records_history():
    config = TrainConfig(steps=200, lr=1e-2, warmup_steps=10, progress=False)
    history = train(tiny_model(), mse, batch_at, config, evaluate=lambda m: {"val": mse(m, batch_at(10_000)).item()})
    assert history.step == list(range(200)) and len(history.lr) == 200
    assert len(history.seconds) == 200 and all(b > a for a, b in zip(history.seconds, history.seconds[1:]))
    assert sum(history.loss[-20:]) < 0.3 * sum(history.loss[:20])  # dropout keeps it from zero
    assert history.evals[-1]["step"] == 199 and history.evals[-1]["val"] < 0.2 * history.loss[0]


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    config = TrainConfig(steps=30, lr=1e-2, warmup_steps=5, progress=False)
    straight = tiny_model()
    straight_history = train(straight, mse, batch_at, config)

    path = tmp_path / "run.pt"
    first = tiny_model()
    train(first, mse, batch_at, config, checkpoint=path, stop_after=12)
    torch.manual_seed(1234)  # disturb the random state: the checkpoint must restore it
    resumed = tiny_model()
    resumed_history = train(resumed, mse, batch_at, config, checkpoint=path)

    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed_history.loss == straight_history.loss


def test_a_diverging_loss_is_an_error():
    config = TrainConfig(steps=5, progress=False)
    with pytest.raises(FloatingPointError, match="loss is nan at step 0"):
        train(tiny_model(), lambda m, b: torch.tensor(float("nan"), requires_grad=True), batch_at, config)


@pytest.mark.parametrize("kwargs", [dict(steps=0), dict(steps=10, warmup_steps=11)])
def test_bad_configs(kwargs):
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)
