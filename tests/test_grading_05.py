"""The graded checks of exercises/05_clip_infonce.ipynb can fail: classic mistakes lose their points."""

from grading_cases import SuiteCases
from minimodal.grading.suites import clip_05

IMPORTS = "import torch\nimport torch.nn.functional as F\n"
RIGHT = IMPORTS + '''
def similarity_logits(image_features, text_features, logit_scale):
    return logit_scale * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T

def clip_loss(image_features, text_features, logit_scale):
    logits = logit_scale * image_features @ text_features.T
    labels = torch.arange(len(logits))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
'''
LOSS_CHECKS = {"clip_loss equals the symmetric InfoNCE", "clip_loss averages both directions",
               "clip_loss gradients flow to features and logit_scale"}

# mistake: (the learner's function, the checks it must fail and only those, a phrase its message says)
WRONG = {
    "logits without normalization": (IMPORTS + '''
def similarity_logits(image_features, text_features, logit_scale):
    return logit_scale * image_features @ text_features.T
''', {"logits are scaled cosine similarities"}, "normalize both sides first"),
    "logits without the temperature": (IMPORTS + '''
def similarity_logits(image_features, text_features, logit_scale):
    return F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
''', {"logits are scaled cosine similarities"}, "multiply the cosines by logit_scale"),
    "a one-directional loss": (IMPORTS + '''
def clip_loss(image_features, text_features, logit_scale):
    logits = logit_scale * image_features @ text_features.T
    return F.cross_entropy(logits, torch.arange(len(logits)))
''', LOSS_CHECKS, "text->image"),
    "a loss without the temperature": (IMPORTS + '''
def clip_loss(image_features, text_features, logit_scale):
    logits = image_features @ text_features.T
    labels = torch.arange(len(logits))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
''', LOSS_CHECKS, "does not depend on logit_scale"),
    "a loss that sums the directions": (IMPORTS + '''
def clip_loss(image_features, text_features, logit_scale):
    logits = logit_scale * image_features @ text_features.T
    labels = torch.arange(len(logits))
    return F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)
''', LOSS_CHECKS, "differs from the reference"),
    "a loss returned as a float": (IMPORTS + '''
def clip_loss(image_features, text_features, logit_scale):
    logits = logit_scale * image_features @ text_features.T
    labels = torch.arange(len(logits))
    return ((F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2).item()
''', LOSS_CHECKS, "should be a torch.Tensor"),
}


class TestInfoNCESuite(SuiteCases):
    suite = clip_05
    right = RIGHT
    wrong = WRONG
    graded = ("logits without normalization", "a one-directional loss")
