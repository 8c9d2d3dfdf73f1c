"""Graded checks for exercises/06_training_clip.ipynb: the learning-rate schedule, one CLIP training
step, and a training loop that must teach a fresh shapes CLIP to classify.

The schedule and the step are compared with minimodal's own (``minimodal.train``) on small
random models; when a step lands elsewhere, the check tries the classic mistakes (no
clipping, gradients left from the last step, one direction of the loss...) and names the
one that matches. The loop is graded by what it achieves: a fresh model trained by it, in
the learner's process, within a step budget and a time limit, must classify held-out
shapes zero-shot; the accuracy is measured here, on the weights it sends back.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from minimodal.check import randomized
from minimodal.clip import CLIP, CLIPConfig, MAX_LOGIT_SCALE
from minimodal.convert import load_hf_checkpoint
from minimodal.device import seed_everything
from minimodal.grading.checks import Check, expect_close, expect_tensor, in_learner
from minimodal.loss import clip_logits, clip_loss, distributed_clip_loss
from minimodal.pretrained import (Recipe, contrastive_loss, load_shapes_clip, shapes_clip_config,
                                  train_shapes_clip, training_batches, zero_shot_accuracy)
from minimodal.text import TextConfig
from minimodal.train import TrainConfig, _LossOfBatch, _step, learning_rate, make_optimizer, train
from minimodal.vit import VisionConfig

NOTEBOOK = "06_training_clip"
STEPS, BATCH = 300, 32            # the loop's budget: 300 batches of 32 pairs
TARGET = 0.35                     # zero-shot accuracy over 18 classes; chance is 1/18 = 5.6%
CLIP_NORM = 1.0


def _schedule_mistakes(step: int, steps: int, warmup: int, peak: float) -> list[tuple[str, float | None]]:
    """(hint, the rate that mistake gives at ``step``, or None where it agrees with the schedule)."""
    if step < warmup:
        return [("the warm-up starts at peak / warmup at step 0, not at 0: step s uses (s + 1) / warmup",
                 peak * step / warmup)]
    progress = (step - warmup) / max(1, steps - warmup)
    return [("the cosine runs over the steps after the warm-up: its progress is (s - warmup) / (steps - warmup)",
             peak * 0.5 * (1 + math.cos(math.pi * step / steps))),
            ("the cosine goes from peak down to 0: peak * (1 + cos(pi * progress)) / 2",
             peak * math.cos(math.pi * progress / 2))]


def _check_schedule(fn, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    settings = [(10, 3, 1.0), (7, 0, 0.5), (5, 5, 2.0)]
    for _ in range(4):
        steps = int(torch.randint(2, 400, (), generator=g))
        settings.append((steps, int(torch.randint(0, steps + 1, (), generator=g)),
                         float(torch.rand((), generator=g)) * 1e-2))
    for steps, warmup, peak in settings:
        config = TrainConfig(steps=steps, lr=peak, warmup_steps=warmup)
        for step in range(steps):
            got, want = fn(step, steps, warmup, peak), learning_rate(step, config)
            if not isinstance(got, (int, float)) or isinstance(got, bool):
                raise AssertionError(f"warmup_cosine should return a Python float, got {type(got).__name__}")
            if abs(got - want) > 1e-9 + 1e-6 * abs(want):
                hint = next((h for h, wrong in _schedule_mistakes(step, steps, warmup, peak)
                             if abs(got - wrong) <= 1e-9 + 1e-6 * abs(wrong)), "")
                raise AssertionError(f"at step {step} of {steps} (warmup {warmup}, peak {peak:.4g}) the rate is "
                                     f"{got:.6g}, expected {want:.6g}" + (f". {hint}" if hint else ""))


def _tiny_clip_config() -> CLIPConfig:
    return CLIPConfig(vision=VisionConfig(image_size=8, patch_size=4, width=16, layers=1, heads=2, embed_dim=8),
                      text=TextConfig(vocab_size=30, context_length=6, width=16, layers=1, heads=2, embed_dim=8,
                                      eot_token_id=29))


def _tiny_problem(seed: int, steps: int, logit_scale: float):
    """A tiny CLIP with random weights, ``steps`` batches of 5 distinct pairs, a rate for each step."""
    g = torch.Generator().manual_seed(seed)
    model = randomized(CLIP(_tiny_clip_config()), seed)
    with torch.no_grad():
        model.logit_scale.fill_(logit_scale)
    batches = []
    for _ in range(steps):
        ids = torch.randint(1, 29, (5, 6), generator=g)
        ids[:, -1] = 29                                       # end of text: the largest id, last
        batches.append((torch.randn(5, 3, 8, 8, generator=g), ids))
    rates = [float(r) for r in torch.rand(steps, generator=g) * 0.2 + 0.05]
    return model.state_dict(), batches, rates


def _optimizer(model: nn.Module, momentum: float) -> torch.optim.Optimizer:
    # plain SGD: unlike Adam, its update is proportional to the gradient, so clipping shows;
    # a rate of 100 here shows a step that forgot to set the rate it was given
    return torch.optim.SGD(model.parameters(), lr=100.0, momentum=momentum)


def _steps_taken(step_fn, state: dict, batches, rates, momentum: float):
    """In the step's process: the losses it returns and the weights after its steps."""
    model = CLIP(_tiny_clip_config())
    model.load_state_dict(state)
    optimizer = _optimizer(model, momentum)
    losses = [step_fn(model, optimizer, pixels, ids, rate) for (pixels, ids), rate in zip(batches, rates)]
    return losses, {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def _reference_step(model, optimizer, pixels, ids, rate):
    """minimodal's training step (the one minimodal.train takes) at a constant rate."""
    config = TrainConfig(steps=1, lr=rate, grad_clip=CLIP_NORM)
    loss, _ = _step(model, _LossOfBatch(model, contrastive_loss), optimizer, (pixels, ids), 0, config, "cpu")
    return loss


def _mistaken_step(mistake: str):
    """A step with one classic mistake, to name the learner's when the weights match it."""
    def step(model, optimizer, pixels, ids, rate):
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] if mistake == "rate" else rate
        image, text = model.encode_image(pixels), model.encode_text(ids)          # (B, E), (B, E)
        if mistake != "normalize":
            image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
        scale = model.logit_scale.exp()
        scale = scale if mistake == "clamp" else scale.clamp(max=MAX_LOGIT_SCALE)
        logits = (model.logit_scale if mistake == "exp" else scale) * image @ text.T   # (B, B)
        labels = torch.arange(len(logits))
        loss = F.cross_entropy(logits, labels)
        if mistake != "one direction":
            loss = (loss + F.cross_entropy(logits.T, labels)) / 2
        if mistake != "zero_grad":
            optimizer.zero_grad()
        loss.backward()
        if mistake != "clip":
            nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        optimizer.step()
        return loss.item()
    return step


STEP_MISTAKES = {
    "rate": "the optimizer kept its own rate: set the given rate on every parameter group before stepping",
    "normalize": "the features were not brought to unit length before the dot products",
    "exp": "the model stores log(scale): multiply the cosines by logit_scale.exp()",
    "clamp": "cap the scale at 100 (CLIP's rule, to keep the logits from exploding)",
    "one direction": "the loss averages the cross-entropy of the rows (image -> text) and of the columns",
    "zero_grad": "gradients of the previous step were still there: clear them before backward",
    "clip": "clip the gradients' total norm to 1 after backward and before the optimizer's step",
}


def _flat(state: dict) -> torch.Tensor:
    return torch.cat([t.flatten().double() for t in state.values()])


def _close(losses, weights, other_losses, other_weights) -> bool:
    return (torch.allclose(torch.tensor(losses, dtype=torch.float64), torch.tensor(other_losses, dtype=torch.float64),
                           atol=1e-5, rtol=1e-5)
            and torch.allclose(_flat(weights), _flat(other_weights), atol=1e-5, rtol=1e-4))


def _diagnosis(problem, momentum: float, losses, weights) -> str:
    """The classic mistake whose losses and weights the learner's steps reproduce, or ''."""
    for mistake, hint in STEP_MISTAKES.items():
        if _close(losses, weights, *_steps_taken(_mistaken_step(mistake), *problem, momentum)):
            return hint
    return ""


def _expect_steps(fn, seed: int, steps: int, logit_scale: float, momentum: float) -> None:
    problem = _tiny_problem(seed, steps, logit_scale)
    got = in_learner(fn, _steps_taken, *problem, momentum)
    want_losses, want_state = _steps_taken(_reference_step, *problem, momentum)
    if not (isinstance(got, tuple) and len(got) == 2):
        raise AssertionError("clip_step did not run: it must take (model, optimizer, pixels, ids, rate)")
    losses, weights = got
    if not all(isinstance(loss, float) for loss in losses):
        raise AssertionError(f"clip_step should return the loss as a Python float (loss.item()), "
                             f"got {type(losses[0]).__name__}")
    if set(weights) != set(want_state):
        raise AssertionError("clip_step changed which tensors the model holds: update the weights in place")
    try:
        for i, (loss, want) in enumerate(zip(losses, want_losses)):
            if abs(loss - want) > 1e-5 * max(1.0, abs(want)):
                raise AssertionError(f"the loss returned at step {i + 1} is {loss:.6g}, expected {want:.6g} "
                                     "(the symmetric InfoNCE of the batch, before the step)")
        expect_close(_flat(weights), _flat(want_state), atol=1e-5, rtol=1e-4,
                     what=f"the weights after {steps} step{'s' if steps > 1 else ''} (SGD, momentum {momentum})")
    except AssertionError as error:
        hint = _diagnosis(problem, momentum, losses, weights)
        raise AssertionError(f"{error}. {hint}" if hint else str(error)) from None


def _check_one_step(fn, seed: int) -> None:
    _expect_steps(fn, seed, steps=1, logit_scale=4.0, momentum=0.0)          # scale 55: gradients past norm 1


def _check_three_steps(fn, seed: int) -> None:
    # a scale of e^4.8 = 121 must be capped at 100; momentum carries each step into the next
    _expect_steps(fn, seed, steps=3, logit_scale=4.8, momentum=0.9)


def _trained_weights(loop_fn, seed: int) -> dict:
    """In the learner's process: a fresh shapes CLIP trained by the learner's loop, on the budget."""
    seed_everything(seed)
    model = CLIP(shapes_clip_config())
    batch_at = training_batches(Recipe(seed=seed, steps=STEPS, batch_size=BATCH, pool_size=2048), "cpu")
    drawn = []

    def counted_batch_at(step: int):
        drawn.append(step)
        return batch_at(step)

    loop_fn(model, counted_batch_at, STEPS)
    return {"batches": len(drawn),
            "weights": {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}}


def _check_training(fn, seed: int) -> str:
    result = in_learner(fn, _trained_weights, seed)
    if result["batches"] > STEPS:
        raise AssertionError(f"train_clip drew {result['batches']} batches; the budget is {STEPS} steps")
    model = CLIP(shapes_clip_config())
    try:
        model.load_state_dict(result["weights"])
    except RuntimeError as error:
        raise AssertionError(f"the trained model's weights do not fit a shapes CLIP: {error}") from None
    for name, tensor in model.state_dict().items():
        if not torch.isfinite(expect_tensor(tensor, what=name)).all():
            raise AssertionError(f"training left inf or nan in {name}: lower the peak rate")
    accuracy = zero_shot_accuracy(model.eval())
    if accuracy < TARGET:
        raise AssertionError(f"after {STEPS} steps the model classifies {accuracy:.1%} of held-out shapes "
                             f"zero-shot; the target is {TARGET:.0%} (chance: 5.6%)")
    return f"reached {accuracy:.1%} on held-out shapes"


OWN = {  # minimodal's functions that make up each answer: a learner's function must not call them
    "warmup_cosine": (learning_rate,),
    "clip_step": (_step, train, contrastive_loss, clip_loss, clip_logits, distributed_clip_loss),
    "train_clip": (train, _step, learning_rate, make_optimizer, contrastive_loss, clip_loss, clip_logits,
                   distributed_clip_loss, train_shapes_clip, load_shapes_clip, load_hf_checkpoint),
}


CHECKS = [
    Check("warmup_cosine matches the schedule at every step", "warmup_cosine", 2, _check_schedule,
          timeout=10, references=OWN["warmup_cosine"]),
    Check("clip_step: one step lands on the reference weights", "clip_step", 3, _check_one_step,
          timeout=10, references=OWN["clip_step"]),
    Check("clip_step: three steps with momentum and a capped scale", "clip_step", 2, _check_three_steps,
          timeout=10, references=OWN["clip_step"]),
    Check(f"train_clip: {TARGET:.0%} zero-shot after {STEPS} steps", "train_clip", 5, _check_training,
          timeout=240, references=OWN["train_clip"]),
]
