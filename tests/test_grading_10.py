"""The graded checks of exercises/10_vilt_blip.ipynb can fail: classic mistakes lose their points."""

from grading_cases import SuiteCases, define, failed_checks
from minimodal.grading.suites import vilt_10

IMPORTS = "import math\nimport torch\nimport torch.nn.functional as F\n"
# Right answers written unlike minimodal's: the LayerNorm and the convolution from the module's
# weights, the scores counted answer by answer, the loss as softplus(x) - t x, the draws by Gumbel-max.
RIGHT = IMPORTS + '''
def vilt_input(model, ids, attention_mask, pixels):
    B, T = ids.shape
    ln = model.ln_embed
    words = model.token_embedding.weight[ids] + model.position_embedding[None, :T] + model.segment_embedding[0]
    text = F.layer_norm(words, words.shape[-1:], ln.weight, ln.bias, ln.eps) + model.modality_embedding[0]
    conv = model.patch_embed
    grid = F.conv2d(pixels, conv.weight, conv.bias, stride=conv.stride)
    patches = grid.reshape(B, grid.shape[1], -1).permute(0, 2, 1)
    image = torch.cat([model.class_embedding.repeat(B, 1, 1), patches], 1)
    image = image + model.image_position_embedding + model.modality_embedding[1]
    keys = torch.cat([attention_mask != 0, torch.ones(B, image.shape[1], dtype=torch.bool)], 1)
    return torch.cat([text, image], 1), keys.view(B, 1, 1, -1)

def soft_scores(answers_per_question, vocabulary):
    out = torch.zeros(len(answers_per_question), len(vocabulary))
    for q, answers in enumerate(answers_per_question):
        for a, word in enumerate(vocabulary):
            out[q, a] = min(1.0, answers.count(word) / 3)
    return out

def soft_score_bce(logits, targets):
    return (F.softplus(logits) - targets * logits).sum(1).mean()

def sample_hard_negatives(similarity, positives, generator):
    u = torch.rand(similarity.shape, generator=generator).clamp(min=1e-12)
    noisy = (similarity - torch.log(-torch.log(u))).masked_fill(positives, -math.inf)
    return torch.where(positives.all(1), -1, noisy.argmax(1))
'''

TEXT = "vilt_input: the words, as BERT embeds them, plus the text type"
IMAGE = "vilt_input: the class token and patches, their positions, plus the image type"
KEYS = "vilt_input: the key mask hides padding words, never an image token"
SCORES = {"soft_scores: min(1, humans / 3) per answer"}
BCE = {"soft_score_bce: BCE with logits against the soft scores, times the answers"}
NEVER, SOFTMAX = ("sample_hard_negatives never draws a positive",
                  "sample_hard_negatives draws by softmax over the wrong entries")
EMPTY, SEEDED = ("sample_hard_negatives gives -1 to a row of positives only",
                 "sample_hard_negatives draws with the generator it is given")

VILT_CODE = IMPORTS + '''
def vilt_input(model, ids, attention_mask, pixels):
    T, types = ids.shape[1], model.modality_embedding
    text = {text}
    grid = model.patch_embed(pixels)
    patches = {patches}
    cls = model.class_embedding.expand(len(ids), 1, -1)
    image = {image}
    seen = {seen}
    return {order}, {keys}
'''


def vilt_code(text: str = "model.ln_embed(model.token_embedding(ids) + model.position_embedding[:T] "
                          "+ model.segment_embedding[0]) + types[0]",
              patches: str = "grid.flatten(2).transpose(1, 2)",
              image: str = "torch.cat([cls, patches], 1) + model.image_position_embedding + types[1]",
              seen: str = "torch.cat([attention_mask.bool(), torch.ones(image.shape[:2], dtype=torch.bool)], 1)",
              order: str = "torch.cat([text, image], 1)", keys: str = "seen[:, None, None, :]") -> str:
    return VILT_CODE.format(text=text, patches=patches, image=image, seen=seen, order=order, keys=keys)


SCORES_CODE = IMPORTS + '''
def soft_scores(answers_per_question, vocabulary):
    index = {{answer: i for i, answer in enumerate(vocabulary)}}
    counts = torch.zeros(len(answers_per_question), len(vocabulary))
    for q, answers in enumerate(answers_per_question):
        for answer in answers:
            {count}
    return {score}
'''


def scores_code(count: str = "if answer in index: counts[q, index[answer]] += 1",
                score: str = "(counts / 3).clamp(max=1)") -> str:
    return SCORES_CODE.format(count=count, score=score)


BCE_CODE = IMPORTS + '''
def soft_score_bce(logits, targets):
    return {loss}
'''

DRAW_CODE = IMPORTS + '''
def sample_hard_negatives(similarity, positives, generator):
    weights = {weights}
    has_wrong = {has_wrong}
    drawn = torch.full((len(similarity),), -1)
    drawn[has_wrong] = {draw}
    return drawn
'''


def draw_code(weights: str = "similarity.masked_fill(positives, -math.inf).softmax(dim=1)",
              draw: str = "torch.multinomial(weights[has_wrong], 1, generator=generator)[:, 0]",
              has_wrong: str = "~positives.all(dim=1)") -> str:
    return DRAW_CODE.format(weights=weights, draw=draw, has_wrong=has_wrong)


WORDS = "model.token_embedding(ids) + model.position_embedding[:T] + model.segment_embedding[0]"
TOKENS = "torch.cat([cls, patches], 1)"

# mistake: (the learner's function, the checks it must fail and only those, a phrase its message says)
WRONG = {
    "the modality type on the text only": (vilt_code(image=f"{TOKENS} + model.image_position_embedding"),
                                           {IMAGE}, "image row of the modality-type"),
    "the modality type on the image only": (vilt_code(text=f"model.ln_embed({WORDS})"), {TEXT},
                                            "text row of the modality-type"),
    "the image type on both sides": (vilt_code(text=f"model.ln_embed({WORDS}) + types[1]"), {TEXT},
                                     "not the image's"),
    "the text type inside the LayerNorm": (vilt_code(text=f"model.ln_embed({WORDS} + types[0])"), {TEXT},
                                           "not inside it"),
    "the segment embedding forgotten": (vilt_code(
        text="model.ln_embed(model.token_embedding(ids) + model.position_embedding[:T]) + types[0]"), {TEXT},
        "segment embedding"),
    "the text LayerNorm forgotten": (vilt_code(text=f"{WORDS} + types[0]"), {TEXT}, "with the text LayerNorm"),
    "every text position added": (vilt_code(
        text="model.ln_embed(model.token_embedding(ids) + model.position_embedding + model.segment_embedding[0])"
             " + types[0]"), {TEXT, IMAGE, KEYS}, "first T rows"),
    "the class token without a position": (vilt_code(
        image="torch.cat([cls, patches + model.image_position_embedding[1:]], 1) + types[1]"), {IMAGE},
        "class token holds the first image position"),
    "the patches in the class token's position slot": (vilt_code(
        image=f"torch.cat([cls, patches + model.image_position_embedding[:patches.shape[1]]], 1) + types[1]"),
        {IMAGE}, "positions 1 to N"),
    "the class token last": (vilt_code(
        image="torch.cat([patches, cls], 1) + model.image_position_embedding + types[1]"), {IMAGE},
        "before the patches"),
    "the grid reshaped, not transposed": (vilt_code(patches="grid.reshape(len(ids), -1, grid.shape[1])"), {IMAGE},
                                          "row-major"),
    "the class token forgotten": (vilt_code(image="patches + model.image_position_embedding[1:] + types[1]"),
                                  {IMAGE, KEYS}, "then the class token"),
    "the image before the words": (vilt_code(order="torch.cat([image, text], 1)"), {TEXT, IMAGE},
                                   "the words first"),
    "padding words left visible": (vilt_code(seen="torch.ones(len(ids), ids.shape[1] + image.shape[1], "
                                                  "dtype=torch.bool)"), {KEYS}, "padding words must be hidden"),
    "image tokens hidden": (vilt_code(seen="torch.cat([attention_mask.bool(), torch.zeros(len(ids), "
                                           "image.shape[1], dtype=torch.bool)], 1)"), {KEYS}, "always real"),
    "the mask marks the hidden keys": (vilt_code(seen="~torch.cat([attention_mask.bool(), torch.ones(len(ids), "
                                                      "image.shape[1], dtype=torch.bool)], 1)"), {KEYS},
                                       "not the hidden ones"),
    "the mask as 0/1 integers": (vilt_code(seen="torch.cat([attention_mask, torch.ones(len(ids), image.shape[1], "
                                                "dtype=torch.long)], 1)"), {KEYS}, "a boolean mask"),
    "the mask without its broadcast axes": (vilt_code(keys="seen"), {KEYS}, "an axis of size 1"),
    "scores not clipped at 1": (scores_code(score="counts / 3"), SCORES, "clip at 1"),
    "scores as the share of humans": (scores_code(score="counts / counts.sum(1, keepdim=True)"), SCORES,
                                      "not by the number of humans"),
    "the majority answer as a hard label": (scores_code(
        score="F.one_hot(counts.argmax(1), len(vocabulary)).float()"), SCORES, "not one hard label"),
    "any mention fully right": (scores_code(score="(counts > 0).float()"), SCORES, "only partly right"),
    "answers outside the vocabulary looked up": (scores_code(count="counts[q, index[answer]] += 1"), SCORES,
                                                 "leave them out"),
    "BCE on hard labels": (BCE_CODE.format(loss="F.binary_cross_entropy_with_logits(logits, F.one_hot("
                                                "targets.argmax(1), targets.shape[1]).float()) * targets.shape[1]"),
                           BCE, "not a one-hot of the best answer"),
    "the plain mean": (BCE_CODE.format(loss="F.binary_cross_entropy_with_logits(logits, targets)"), BCE,
                       "multiply the mean by the number of answers"),
    "the sum over everything": (BCE_CODE.format(loss="F.binary_cross_entropy_with_logits(logits, targets, "
                                                     "reduction='sum')"), BCE, "average over the questions"),
    "a softmax over the answers": (BCE_CODE.format(loss="-(targets * logits.log_softmax(1)).sum(1).mean()"), BCE,
                                   "not a softmax"),
    "the log of a sigmoid, clamped": (BCE_CODE.format(
        loss="F.binary_cross_entropy(torch.sigmoid(logits), targets) * targets.shape[1]"), BCE, "softplus"),
    "the log of a sigmoid": (BCE_CODE.format(
        loss="-(targets * torch.log(torch.sigmoid(logits)) + (1 - targets) * torch.log(1 - torch.sigmoid(logits)))"
             ".sum(1).mean()"), BCE, "its log is infinite"),
    "the positive drawn as its own negative": (draw_code(weights="similarity.softmax(dim=1)"), {NEVER},
                                               "leave the positives out"),
    "the positives masked with 0": (draw_code(weights="similarity.masked_fill(positives, 0).softmax(dim=1)"),
                                    {NEVER, SOFTMAX}, "a positive"),
    "the argmax instead of a draw": (draw_code(draw="weights[has_wrong].argmax(dim=1)"), {SOFTMAX},
                                     "draw at random"),
    "uniform over the wrong entries": (draw_code(weights="(~positives).float()"), {SOFTMAX},
                                       "ignore the similarities"),
    "torch's global generator": (draw_code(draw="torch.multinomial(weights[has_wrong], 1)[:, 0]"), {SEEDED},
                                 "the generator you are given"),
    "a row of positives only not handled": (IMPORTS + '''
def sample_hard_negatives(similarity, positives, generator):
    weights = similarity.masked_fill(positives, -math.inf).softmax(dim=1)
    return torch.multinomial(weights, 1, generator=generator)[:, 0]
''', {EMPTY}, "give it -1"),
    "a row of positives only drawn from anyway": (draw_code(
        weights="similarity.masked_fill(positives, -1e9).softmax(dim=1)",
        has_wrong="torch.ones(len(similarity), dtype=torch.bool)"), {EMPTY}, "gets -1"),
    "ViLT's own image embedding": (vilt_code(image="model.embed_image(pixels)"), {TEXT, IMAGE, KEYS},
                                   "minimodal's own implementation (ViLT.embed_image)"),
    "minimodal's soft scores": (IMPORTS + '''
from minimodal.vilt import vqa_soft_scores

def soft_scores(answers_per_question, vocabulary):
    return vqa_soft_scores(answers_per_question, vocabulary)
''', SCORES, "minimodal's own implementation (vqa_soft_scores)"),
    "minimodal's loss": (IMPORTS + '''
from minimodal.vilt import vqa_bce_loss

def soft_score_bce(logits, targets):
    return vqa_bce_loss(logits, targets)
''', BCE, "minimodal's own implementation (vqa_bce_loss)"),
    "BLIP's own draws": (IMPORTS + '''
from minimodal.blip_loss import hard_negatives

def sample_hard_negatives(similarity, positives, generator):
    return hard_negatives(similarity, positives, generator)[0]
''', {NEVER, SOFTMAX, EMPTY, SEEDED}, "minimodal's own implementation (hard_negatives)"),
}


class TestViltSuite(SuiteCases):
    suite = vilt_10
    right = RIGHT
    wrong = WRONG
    # one mistake per function: the grader must take their checks' points and leave the others
    graded = ("the modality type on the text only", "any mention fully right", "BCE on hard labels",
              "the positive drawn as its own negative")


def test_the_right_version_of_each_wrong_one_passes():
    """The templates the mistakes are made from are right once the mistake is taken out."""
    for source, function in [(vilt_code(), "vilt_input"), (scores_code(), "soft_scores"),
                             (BCE_CODE.format(loss="F.binary_cross_entropy_with_logits(logits, targets) "
                                                   "* targets.shape[1]"), "soft_score_bce"),
                             (draw_code(), "sample_hard_negatives")]:
        assert failed_checks(vilt_10.CHECKS, function, define(source, function)) == {}, function
