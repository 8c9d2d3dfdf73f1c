"""The graded checks of exercises/12_llava.ipynb can fail: classic mistakes lose their points."""

import sys

import pytest
import torch

from grading_cases import SuiteCases
from minimodal.grading.checks import own_code_refused
from minimodal.grading.suites import llava_12
from minimodal.llava import splice_images

PROJECT = "project: linear_2(gelu(linear_1(features)))"
SPLICE, GRADIENTS, COUNT = ("splice_images: image i in the i-th run of placeholders, row by row",
                            "splice_images keeps the gradient to the image tokens and the embeddings' dtype",
                            "splice_images raises ValueError when placeholders ≠ images × tokens")
LABELS, EDGES = ("chat_labels: each answer and its closing <|end|>, nothing else",
                 "chat_labels of open, cut, answerless and empty chats")

IMPORTS = "import torch\nimport torch.nn.functional as F\n"
RIGHT = IMPORTS + '''
def project(features, linear_1, linear_2):
    hidden = features @ linear_1.weight.T + linear_1.bias
    hidden = 0.5 * hidden * (1 + torch.erf(hidden / 2 ** 0.5))
    return hidden @ linear_2.weight.T + linear_2.bias

def splice_images(embeddings, ids, image_id, image_tokens):
    count, (images, tokens, width) = int((ids == image_id).sum()), image_tokens.shape
    if count != images * tokens:
        raise ValueError(f"{count} placeholders for {images * tokens} image tokens")
    queue = iter(image_tokens.reshape(-1, width).to(embeddings.dtype))
    return torch.stack([torch.stack([next(queue) if token == image_id else embeddings[b, t]
                                     for t, token in enumerate(row)]) for b, row in enumerate(ids.tolist())])

def chat_labels(ids, assistant_id, end_id):
    labels = torch.full_like(ids, -100)
    for b, row in enumerate(ids.tolist()):
        answering = False
        for t, token in enumerate(row):
            if answering:
                labels[b, t] = token
            answering = token == assistant_id or (answering and token != end_id)
    return labels
'''

PROJECT_CODE = IMPORTS + '''
def project(features, linear_1, linear_2):
    {body}
'''
SPLICE_CODE = IMPORTS + '''
def splice_images(embeddings, ids, image_id, image_tokens):
    slots = ids == image_id
    if int(slots.sum()) != image_tokens.shape[0] * image_tokens.shape[1]:
        raise ValueError(f"{{int(slots.sum())}} placeholders, {{image_tokens.shape[0] * image_tokens.shape[1]}} needed")
    {body}
'''
LABELS_CODE = IMPORTS + '''
def chat_labels(ids, assistant_id, end_id):
    positions = torch.arange(ids.shape[1]).expand_as(ids)
    def latest(marker, strict=True):
        up_to = torch.where(ids == marker, positions, -1).cummax(dim=1).values
        return F.pad(up_to[:, :-1], (1, 0), value=-1) if strict else up_to
    answering = latest(assistant_id) > latest(end_id)
    {body}
'''
KEEP = 'return torch.where({}, ids, torch.full_like(ids, -100))'

ALL_SPLICE, ALL_LABELS = {SPLICE, GRADIENTS, COUNT}, {LABELS, EDGES}

# mistake: (the learner's function, the checks it must fail and only those, a phrase its message says)
WRONG = {
    "projector with ReLU": (PROJECT_CODE.format(body="return linear_2(F.relu(linear_1(features)))"),
                            {PROJECT}, "not ReLU"),
    "projector without the second linear": (PROJECT_CODE.format(body="return F.gelu(linear_1(features))"),
                                            {PROJECT}, "after GELU comes linear_2"),
    "projector with the tanh GELU": (PROJECT_CODE.format(
        body='return linear_2(F.gelu(linear_1(features), approximate="tanh"))'), {PROJECT}, "tanh approximation"),
    "projector calls minimodal's": (PROJECT_CODE.format(body='''from minimodal.llava import Projector
    projector = Projector(1, 1)
    projector.linear_1, projector.linear_2 = linear_1, linear_2
    return projector(features)'''), {PROJECT}, "minimodal's own implementation (Projector.forward)"),
    "image tokens appended at the end": (IMPORTS + '''
def splice_images(embeddings, ids, image_id, image_tokens):
    appended = image_tokens.reshape(1, -1, embeddings.shape[-1]).expand(len(ids), -1, -1)
    return torch.cat([embeddings, appended.to(embeddings.dtype)], dim=1)
''', ALL_SPLICE, "the sequence keeps its length"),
    "splice ignores the count mismatch": (IMPORTS + '''
def splice_images(embeddings, ids, image_id, image_tokens):
    return embeddings.masked_scatter((ids == image_id)[..., None], image_tokens.to(embeddings.dtype))
''', {COUNT}, "raised nothing"),
    "splice raises RuntimeError on a mismatch": (IMPORTS + '''
def splice_images(embeddings, ids, image_id, image_tokens):
    spliced = embeddings.clone()
    spliced[ids == image_id] = image_tokens.reshape(-1, embeddings.shape[-1]).to(embeddings.dtype)
    return spliced
''', {COUNT}, "raise ValueError when they are not images × tokens"),
    "splice column by column": (SPLICE_CODE.format(body='''spliced = embeddings.clone()
    spliced.transpose(0, 1)[slots.T] = image_tokens.reshape(-1, embeddings.shape[-1]).to(embeddings.dtype)
    return spliced'''), {SPLICE}, "not column by column"),
    "splice detaches the image tokens": (SPLICE_CODE.format(
        body="return embeddings.masked_scatter(slots[..., None], image_tokens.detach().to(embeddings.dtype))"),
        {GRADIENTS}, "no gradient reached the image tokens"),
    "splice returns the image tokens' dtype": (SPLICE_CODE.format(body='''placed = torch.zeros(embeddings.shape)
    placed[slots] = image_tokens.reshape(-1, image_tokens.shape[-1])
    return torch.where(slots[..., None], placed, embeddings)'''), {GRADIENTS}, "return the embeddings' dtype"),
    "splice calls minimodal's": (IMPORTS + '''
def splice_images(embeddings, ids, image_id, image_tokens):
    from minimodal import llava
    return llava.splice_images(embeddings, ids, image_id, image_tokens)
''', ALL_SPLICE, "minimodal's own implementation (splice_images)"),
    "labels inverted": (LABELS_CODE.format(body=KEEP.format("latest(end_id) > latest(assistant_id)")),
                        ALL_LABELS, "the other way round"),
    "the closing <|end|> not learned": (LABELS_CODE.format(body=KEEP.format("answering & (ids != end_id)")),
                                        ALL_LABELS, "where to stop"),
    "the <|assistant|> marker learned": (LABELS_CODE.format(body=KEEP.format("answering | (ids == assistant_id)")),
                                         ALL_LABELS, "marker itself is not learned"),
    "markers up to and including the token": (LABELS_CODE.format(
        body=KEEP.format("latest(assistant_id, False) > latest(end_id, False)")), ALL_LABELS, "strictly before"),
    "every token after the first <|assistant|> learned": (LABELS_CODE.format(
        body=KEEP.format("latest(assistant_id) >= 0")), ALL_LABELS, "the user's next turn is not learned"),
    "an answer cut short not learned": (LABELS_CODE.format(
        body=KEEP.format("answering & ((ids == end_id).flip(1).cumsum(1).flip(1) > 0)")), {EDGES}, "cut short"),
    "labels as floats": (LABELS_CODE.format(body="return torch.where(answering, ids.float(), -100.0)"),
                         ALL_LABELS, "int64"),
    "chat labels call minimodal's": (LABELS_CODE.format(body='''from minimodal.llava import chat_labels
    return chat_labels(ids, assistant_id, end_id)'''), ALL_LABELS, "minimodal's own implementation (chat_labels)"),
}


class TestLlavaSuite(SuiteCases):
    suite = llava_12
    right = RIGHT
    wrong = WRONG
    graded = ("projector with ReLU", "image tokens appended at the end", "labels inverted")


def test_every_check_belongs_to_a_graded_function():
    assert {check.function for check in llava_12.CHECKS} == {"project", "splice_images", "chat_labels"}


def test_a_refused_call_wins_over_the_error_it_raised_and_the_profiler_comes_back():
    def profiler(frame, event, arg):
        return None

    previous = sys.getprofile()
    sys.setprofile(profiler)
    try:
        with pytest.raises(AssertionError, match=r"minimodal's own implementation \(splice_images\)"):
            with own_code_refused("splice_images", splice_images):  # 1 placeholder for 2 images: ValueError
                splice_images(torch.zeros(1, 1, 1), torch.zeros(1, 1), 0, torch.zeros(2, 1, 1))
        assert sys.getprofile() is profiler
    finally:
        sys.setprofile(previous)
