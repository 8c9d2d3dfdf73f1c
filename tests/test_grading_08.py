"""The graded checks of exercises/08_vqa_lstm.ipynb can fail: classic mistakes lose their points."""

import pytest

from conftest import REPO
from grading_cases import assert_fails_exactly, assert_fresh_exercise_scores_zero, assert_full_marks, define
from minimodal.grading import grade
from minimodal.grading.suites import vqa_08
from minimodal.lstm import init_forget_bias, lstm_cell
from minimodal.vqa import FusedClassifier, fuse

SOLUTION = REPO / "solutions" / "08_vqa_lstm.ipynb"
TOTAL = sum(check.points for check in vqa_08.CHECKS)
STEP, GRADS = "one LSTM step equals torch's", "gradients reach every weight through three steps"
BIAS, FUSE, CLASSIFY = ("forget bias in the forget gate's rows, once", "product and image-first concatenation",
                        "fused classifier gives the reference logits")
FULL, PADDED = ("rows of full length: the state after the last step",
                "right-padded rows: the state after each row's last real step")

CELL = '''
import torch

def lstm_cell(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh):
    gates = x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh
    {order} = gates{detach}.chunk(4, dim=1)
    new_c = torch.sigmoid(f) * c + torch.sigmoid(i) * {candidate}(g)
    return torch.sigmoid(o) * torch.tanh({memory}), new_c
'''


def cell(order="i, f, g, o", candidate="torch.tanh", memory="new_c", detach=""):
    """An lstm_cell that is right but for the one part named."""
    return CELL.format(order=order, candidate=candidate, memory=memory, detach=detach)


BIAS_CODE = '''
import torch

def init_forget_bias(cell, value=1.0):
    H = cell.hidden_size
    with torch.no_grad():
        {body}
'''
BATCH_CODE = '''
import torch

def lstm_over_batch(cell, x, lengths):
    h = c = torch.zeros(len(x), cell.hidden_size)
    for t in range(x.shape[1]):
        real = ({real})[:, None]
        new_h, new_c = cell(x[:, t], (h, c))
        h, c = torch.where(real, new_h, h), torch.where(real, new_c, c)
    return h, c
'''
FUSE_CODE = '''
import torch

def fuse(v, q, fusion):
    if fusion == "product":
        return v * q
    return {concat}
'''
CLASSIFY_CODE = '''
import torch

def classify(classifier, image_features, question_features):
    {body}
'''

# name: (learner code, the checks it must fail, a phrase its message must contain)
WRONG = {
    "gates in the order i, f, o, g": (cell(order="i, f, o, g"), {STEP}, "input, forget, output, candidate"),
    "forget and input gates swapped": (cell(order="f, i, g, o"), {STEP}, "forget, input, candidate, output"),
    "a sigmoid on the candidate": (cell(candidate="torch.sigmoid"), {STEP}, "takes a tanh"),
    "h from the old memory": (cell(memory="c"), {STEP}, "using the new memory"),
    "detaches the state": (cell(detach=".detach()"), {GRADS}, "no gradient reached"),
    "forget bias in the input gate's rows": (BIAS_CODE.format(body='''cell.bias_ih[:H] = value
        cell.bias_hh[:H] = 0.0'''), {BIAS}, "the input gate's rows"),
    "forget bias in both biases": (BIAS_CODE.format(body='''cell.bias_ih[H:2 * H] = value
        cell.bias_hh[H:2 * H] = value'''), {BIAS}, "gives"),
    "forget bias over the whole vector": (BIAS_CODE.format(body='''cell.bias_ih[:] = value
        cell.bias_hh[:] = 0.0'''), {BIAS}, "changed outside"),
    "the padding is read": (BATCH_CODE.format(real="torch.ones(len(x), dtype=torch.bool)"), {PADDED},
                            "the padding after a row's end changed its state"),
    "each row stops a step early": (BATCH_CODE.format(real="t < lengths - 1"), {FULL, PADDED}, "one step early"),
    "each row reads a step of padding": (BATCH_CODE.format(real="t <= lengths"), {PADDED},
                                         "reads one step of padding"),
    "one state carried from row to row": ('''
import torch

def lstm_over_batch(cell, x, lengths):
    h = c = torch.zeros(1, cell.hidden_size)
    rows = []
    for row, length in zip(x, lengths.tolist()):
        for t in range(length):
            h, c = cell(row[t:t + 1], (h, c))
        rows.append((h[0], c[0]))
    return torch.stack([h for h, _ in rows]), torch.stack([c for _, c in rows])
''', {FULL, PADDED}, "every row starts from zeros"),
    "lstm_over_batch hands the work to minimodal's LSTM": ('''
from minimodal.lstm import LSTM, LSTMConfig

def lstm_over_batch(cell, x, lengths):
    lstm = LSTM(LSTMConfig(input_size=x.shape[-1], hidden_size=cell.hidden_size))
    lstm.layers[0].load_state_dict(cell.state_dict())
    _, (h, c) = lstm(x, lengths)
    return h[0], c[0]
''', {FULL, PADDED}, "minimodal's own implementation (LSTM.forward)"),
    "concatenates question first": (FUSE_CODE.format(concat="torch.cat([q, v], dim=-1)"), {FUSE},
                                    "question first"),
    "concatenates along the batch": (FUSE_CODE.format(concat="torch.cat([v, q], dim=0)"), {FUSE},
                                     "not the batch"),
    "fuses before the ReLU": (CLASSIFY_CODE.format(body='''v = classifier.image_proj(image_features)
    q = classifier.question_proj(question_features)
    fused = v * q if classifier.fusion == "product" else torch.cat([v, q], dim=-1)
    return classifier.head(torch.relu(fused))'''), {CLASSIFY}, "not on the fused vector"),
    "a fused classifier without its ReLUs": (CLASSIFY_CODE.format(body='''v = classifier.image_proj(image_features)
    q = classifier.question_proj(question_features)
    fused = v * q if classifier.fusion == "product" else torch.cat([v, q], dim=-1)
    return classifier.head(fused)'''), {CLASSIFY}, "the projections need their ReLUs"),
    "always multiplies": (CLASSIFY_CODE.format(body='''v = torch.relu(classifier.image_proj(image_features))
    q = torch.relu(classifier.question_proj(question_features))
    return classifier.head(v * q)'''), {CLASSIFY}, "concat"),
    "classify hands the work to the classifier": (CLASSIFY_CODE.format(
        body="return classifier(image_features, question_features)"), {CLASSIFY},
        "minimodal's own implementation (FusedClassifier.forward)"),
    "lstm_cell wraps minimodal's": ('''
import minimodal.lstm

def lstm_cell(*args):
    return minimodal.lstm.lstm_cell(*args)
''', {STEP, GRADS}, "minimodal's own implementation (lstm_cell)"),
}

REFERENCES = {"lstm_cell": lstm_cell, "init_forget_bias": init_forget_bias, "fuse": fuse,
              "lstm_over_batch": define(WRONG["lstm_over_batch hands the work to minimodal's LSTM"][0],
                                        "lstm_over_batch"),
              "classify": lambda classifier, v, q: FusedClassifier.forward(classifier, v, q)}


@pytest.mark.parametrize("function", sorted(REFERENCES))
def test_reference_passes_its_checks(function):
    for check in vqa_08.CHECKS:
        if check.function == function:
            for seed in range(3):
                check.run(REFERENCES[function], seed)


@pytest.mark.parametrize("mistake", sorted(WRONG))
def test_each_wrong_version_fails_exactly_its_checks(mistake):
    source, expected, phrase = WRONG[mistake]
    assert_fails_exactly(vqa_08.CHECKS, source, expected, phrase)


def test_solution_scores_full_marks():
    assert_full_marks(SOLUTION, TOTAL)


def test_fresh_exercise_scores_zero(tmp_path):
    assert_fresh_exercise_scores_zero(SOLUTION, tmp_path, TOTAL)


def test_wrong_versions_lose_their_points_in_the_grader(learner_notebook):
    wrong = [WRONG[name][0] for name in ("gates in the order i, f, o, g", "forget bias in both biases",
                                         "the padding is read", "concatenates question first",
                                         "a fused classifier without its ReLUs")]
    report = grade(learner_notebook("08_vqa_lstm", *wrong), seed=0)
    earned = {r.check: r.earned for r in report.results}
    assert earned == {STEP: 0, GRADS: 2, BIAS: 0, FULL: 2, PADDED: 0, FUSE: 0, CLASSIFY: 0}, report.table()


def test_handing_the_work_to_minimodal_scores_nothing_in_the_grader(learner_notebook):
    borrowed = [WRONG[name][0] for name in ("classify hands the work to the classifier", "lstm_cell wraps minimodal's",
                                            "lstm_over_batch hands the work to minimodal's LSTM")]
    report = grade(learner_notebook("08_vqa_lstm", *borrowed), seed=0)
    assert report.score == 0, report.table()
    refused = {r.check for r in report.results if "minimodal's own implementation" in r.message}
    assert refused == {STEP, GRADS, FULL, PADDED, CLASSIFY}, report.table()
