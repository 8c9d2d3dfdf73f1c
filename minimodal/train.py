"""One training loop for every model in the course.

AdamW with weight decay on matrices only, a linear warmup then a cosine decay of the
learning rate, gradient clipping, bf16 autocast on CUDA, a progress bar, a history to
plot, and checkpoints that resume exactly: a run stopped at step k and resumed ends with
the same weights as a run that never stopped. For that, a batch must be a function of
the step number (``batch_at(step)``), and the checkpoint keeps the random-number state.

Under torchrun the same loop trains data-parallel: every process builds the step's batch,
keeps its own slice, and DistributedDataParallel averages the gradients, so the weights
follow the one-process run on the whole batch. Rank 0 alone draws the bar, evaluates and
writes checkpoints. Nothing changes for the caller but the command that starts it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from minimodal import distributed
from minimodal.device import autocast


@dataclass
class TrainConfig:
    steps: int
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 0
    min_lr: float = 0.0
    grad_clip: float | None = 1.0
    eval_every: int = 0          # 0: evaluate only at the end (when an evaluate function is given)
    progress: bool = True        # a tqdm bar; lessons under nbval turn it off to keep stderr clean

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not 0 <= self.warmup_steps <= self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps={self.steps}], got {self.warmup_steps}")


@dataclass
class History:
    """What happened at each step, for plots: history.loss[i] is the loss at history.step[i]."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # training time up to the end of each step, evaluations excluded
    evals: list[dict] = field(default_factory=list)   # {"step": s, **metrics}


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warmup from 0 to lr over warmup_steps, then cosine down to min_lr at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = (step - config.warmup_steps) / span
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW that decays weight matrices but not biases, norms' gains or scalars like logit_scale.

    The fused kernel updates each tensor in one pass instead of a dozen; on a CPU that is
    ten times faster for a large table such as CLIP's 49,408-row token embedding.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    keep = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": keep, "weight_decay": 0.0}]
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, fused=fused)


def train(model: nn.Module, loss_fn: Callable[[nn.Module, object], torch.Tensor],
          batch_at: Callable[[int], object], config: TrainConfig, *,
          device: torch.device | str = "cpu", checkpoint: str | Path | None = None,
          checkpoint_every: int = 0, stop_after: int | None = None,
          evaluate: Callable[[nn.Module], dict] | None = None) -> History:
    """Train ``model`` for config.steps steps; return the history.

    loss_fn(model, batch) -> scalar loss; batch_at(step) -> the batch for that step, already
    on ``device``. With ``checkpoint``, training resumes from that file when it exists and
    saves to it every ``checkpoint_every`` steps and at the end. ``stop_after`` ends the run
    early after that many steps (to show, or test, a resume). Under torchrun each process
    trains on its slice of every batch, the history's losses are averaged over processes, and
    only rank 0 evaluates (the other ranks' history.evals stay empty).
    """
    model.to(device)
    optimizer = make_optimizer(model, config)
    history, start = History(), 0
    if checkpoint is not None and Path(checkpoint).exists():
        start, history = load_checkpoint(checkpoint, model, optimizer)
    loss_of_batch = _loss_module(model, loss_fn, device)
    main, rank, world = distributed.is_main(), distributed.rank(), distributed.world_size()
    end = config.steps if stop_after is None else min(config.steps, start + stop_after)
    elapsed = history.seconds[-1] if history.seconds else 0.0
    bar = tqdm(range(start, end), initial=start, total=config.steps, disable=not (config.progress and main),
               desc="train", unit="step")
    for step in bar:
        clock = time.perf_counter()
        batch = distributed.shard(batch_at(step), rank, world)
        loss, grad_norm = _step(model, loss_of_batch, optimizer, batch, step, config, device)
        elapsed += time.perf_counter() - clock
        history.seconds.append(elapsed)
        history.step.append(step)
        history.loss.append(loss)
        history.lr.append(optimizer.param_groups[0]["lr"])
        history.grad_norm.append(grad_norm)
        bar.set_postfix(loss=f"{loss:.4f}")
        last = step == config.steps - 1
        if main and evaluate is not None and (last or (config.eval_every and (step + 1) % config.eval_every == 0)):
            history.evals.append({"step": step, **_evaluate(model, evaluate)})
        if checkpoint is not None and (step + 1 == end or (checkpoint_every and (step + 1) % checkpoint_every == 0)):
            save_checkpoint(checkpoint, model, optimizer, step + 1, history)
    bar.close()
    return history


class _LossOfBatch(nn.Module):
    """The model and its loss as one module, so DistributedDataParallel sees the whole forward.

    DDP prepares its gradient averaging when its own forward runs; loss functions call
    other methods (CLIP's encode_image and encode_text), so the forward it wraps must be
    the loss itself.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, object], torch.Tensor]):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


def _loss_module(model: nn.Module, loss_fn, device) -> nn.Module:
    """batch -> loss; wrapped in DDP when several processes train together."""
    module = _LossOfBatch(model, loss_fn)
    if not distributed.is_distributed():
        return module
    device = torch.device(device)
    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)


def _step(model, loss_of_batch, optimizer, batch, step, config, device) -> tuple[float, float]:
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(step, config)
    model.train()
    with autocast(device):
        loss = loss_of_batch(batch)
    mean_loss = distributed.mean_over_processes(loss.detach())  # the same value on every process
    if not torch.isfinite(mean_loss):
        raise FloatingPointError(f"loss is {mean_loss.item()} at step {step}: lower the learning rate "
                                 "or check the inputs")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    max_norm = config.grad_clip if config.grad_clip is not None else float("inf")
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return mean_loss.item(), grad_norm.item()


def _evaluate(model: nn.Module, evaluate) -> dict:
    model.eval()
    with torch.no_grad():
        metrics = evaluate(model)
    model.train()
    return metrics


def save_checkpoint(path, model: nn.Module, optimizer, step: int, history: History) -> None:
    """Everything a resume needs: weights, optimizer moments, step, history, and the random
    state of every process (rank 0 writes the file; the others wait until it is there)."""
    generators = {"rng_cpu": torch.get_rng_state}
    if torch.cuda.is_available():
        generators["rng_cuda"] = torch.cuda.get_rng_state   # this process's GPU
    states = distributed.gather_objects({key: get() for key, get in generators.items()})
    if distributed.is_main():
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                 "history": asdict(history),
                 **{key: torch.stack([s[key] for s in states]) for key in generators}}  # (processes, state)
        tmp = Path(path).with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)  # never leave a half-written checkpoint behind
    distributed.barrier()


def load_checkpoint(path, model: nn.Module, optimizer) -> tuple[int, History]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    processes, world = len(state["rng_cpu"]), distributed.world_size()
    if processes != world:
        raise ValueError(f"{path} was written by a run of {processes} process(es) and this run has "
                         f"{world}: resume with the same number, since each one's random state is restored")
    model.load_state_dict(state["model"], strict=True)
    optimizer.load_state_dict(state["optimizer"])
    rank = distributed.rank()
    torch.set_rng_state(state["rng_cpu"][rank].clone())  # a row of its own, not a view into the stack
    if "rng_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["rng_cuda"][rank].clone())
    return state["step"], History(**state["history"])


def write_history(folder: str | Path, history: History) -> None:
    """history.json beside an exported checkpoint: steps, losses, training seconds, evaluations."""
    curve = {"step": history.step, "loss": history.loss, "seconds": history.seconds, "evals": history.evals}
    (Path(folder) / "history.json").write_text(json.dumps(curve))


def read_history(folder: str | Path) -> dict[str, list]:
    """The curve ``write_history`` saved, as a dict of lists."""
    return json.loads((Path(folder) / "history.json").read_text())
