"""The graded checks of exercises/06_training_clip.ipynb can fail: classic mistakes lose their points.

A wrong training loop is graded by the accuracy it reaches, which needs a whole training run;
the wrong loops here fail in seconds (one step, or too many batches), and the right loop is
trained once per test that needs it.
"""

from grading_cases import SuiteCases
from minimodal.grading.suites import train_06

IMPORTS = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
SCHEDULE = '''
def warmup_cosine(step, steps, warmup, peak):
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))) / 2
'''
STEP = '''
def clip_step(model, optimizer, pixels, ids, rate):
    for group in optimizer.param_groups:
        group["lr"] = rate
    a = model.encode_image(pixels)
    b = model.encode_text(ids)
    a = a / a.norm(dim=1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True)
    scores = torch.clamp(torch.exp(model.logit_scale), max=100.0) * (a @ b.T)
    target = torch.arange(scores.shape[0])
    loss = 0.5 * (F.cross_entropy(scores, target) + F.cross_entropy(scores.T, target))
    for p in model.parameters():
        p.grad = None
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()
    return loss.item()
'''
LOOP = '''
def train_clip(model, batch_at, steps):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    for step in range(steps):
        clip_step(model, optimizer, *batch_at(step), warmup_cosine(step, steps, 20, 2e-3))
'''
RIGHT = IMPORTS + SCHEDULE + STEP + LOOP

SCHEDULE_CHECK = {"warmup_cosine matches the schedule at every step"}
STEP_CHECKS = {"clip_step: one step lands on the reference weights",
               "clip_step: three steps with momentum and a capped scale"}
THREE_STEPS = {"clip_step: three steps with momentum and a capped scale"}
TRAINING = {"train_clip: 35% zero-shot after 300 steps"}


def step_with(old: str, new: str) -> str:
    assert old in STEP, old
    return IMPORTS + STEP.replace(old, new)


# mistake: (the learner's function, the checks it must fail and only those, a phrase its message says)
WRONG = {
    "a warm-up from zero": (IMPORTS + SCHEDULE.replace("(step + 1) / warmup", "step / warmup"),
                            SCHEDULE_CHECK, "(s + 1) / warmup"),
    "a cosine over all the steps": (IMPORTS + SCHEDULE.replace("(step - warmup) / max(1, steps - warmup)",
                                                               "step / steps"),
                                    SCHEDULE_CHECK, "(s - warmup) / (steps - warmup)"),
    "a step without clipping": (step_with("    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)\n",
                                          ""), STEP_CHECKS, "clip the gradients"),
    "a step that keeps old gradients": (step_with("    for p in model.parameters():\n        p.grad = None\n", ""),
                                        THREE_STEPS, "clear them before backward"),
    "a one-directional loss": (step_with("0.5 * (F.cross_entropy(scores, target) + F.cross_entropy(scores.T, target))",
                                         "F.cross_entropy(scores, target)"), STEP_CHECKS, "rows (image -> text)"),
    "features not normalized": (step_with("    a = a / a.norm(dim=1, keepdim=True)\n    b = b / b.norm(dim=1, keepdim=True)\n",
                                          ""), STEP_CHECKS, "unit length"),
    "an uncapped scale": (step_with("torch.clamp(torch.exp(model.logit_scale), max=100.0)",
                                    "torch.exp(model.logit_scale)"), THREE_STEPS, "cap the scale at 100"),
    "the rate left unset": (step_with('        group["lr"] = rate\n', "        pass\n"), STEP_CHECKS,
                            "set the given rate"),
    "the loss returned as a tensor": (step_with("return loss.item()", "return loss"), STEP_CHECKS, "Python float"),
    "a loop that stops after one step": (IMPORTS + '''
def train_clip(model, batch_at, steps):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    pixels, ids = batch_at(0)
    (-(model.encode_image(pixels) * model.encode_text(ids)).sum(-1).mean()).backward()
    optimizer.step()
''', TRAINING, "the target is 35%"),
    "a loop past its budget": (IMPORTS + '''
def train_clip(model, batch_at, steps):
    for step in range(steps + 1):
        batch_at(step)
''', TRAINING, "the budget is 300 steps"),
    "a loop that calls minimodal's": (IMPORTS + '''
from minimodal.pretrained import contrastive_loss
from minimodal.train import TrainConfig, train

def train_clip(model, batch_at, steps):
    train(model, contrastive_loss, batch_at, TrainConfig(steps=1, progress=False))
''', TRAINING, "calls minimodal's own implementation"),
}


class TestTrainingSuite(SuiteCases):
    suite = train_06
    right = RIGHT
    wrong = WRONG
    graded = ("a warm-up from zero", "a step that keeps old gradients", "a loop that stops after one step")
    once = frozenset(TRAINING)
