"""Graded checks for exercises/10_vilt_blip.ipynb: ViLT's fused input, VQA's soft scores and their
binary cross-entropy, BLIP's hard negatives.

Each deterministic check compares the learner's function with minimodal's on inputs drawn from
``seed``: ViLTs with every weight random (so a forgotten norm or type row shows), questions
padded to different lengths, ten human answers per question, some outside the vocabulary,
logits large enough that a log of a sigmoid breaks. The hard negatives are random draws, so
their checks count: thousands of draws per row, compared with softmax over the row's wrong
entries. When an answer differs, the check names the classic mistake it reproduces: a type
row on one side only, the class token without its position, padding left visible, hard
labels, the positive drawn as its own negative, the argmax in place of a draw. A graded
function may not call minimodal's own implementation of itself (``OWN`` below).

Longer than 300 lines because the notebook grades four functions, each with the mistakes it
names; one section per function, and a suite is one module per notebook.
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F

from minimodal.blip_loss import NO_NEGATIVE, _draw_rows, hard_negatives
from minimodal.check import randomized
from minimodal.grading.checks import Check, expect_like, expect_tensor
from minimodal.vilt import IMAGE, TEXT, ViLT, ViltConfig, vqa_bce_loss, vqa_soft_scores

NOTEBOOK = "10_vilt_blip"
OWN = {  # minimodal's functions that make up each answer: a learner's function must not call them
    "vilt_input": (ViLT.embed, ViLT.embed_text, ViLT.embed_image),
    "soft_scores": (vqa_soft_scores,),
    "soft_score_bce": (vqa_bce_loss,),
    "sample_hard_negatives": (hard_negatives, _draw_rows),
}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ints(low: int, high: int, g: torch.Generator) -> int:
    return int(torch.randint(low, high + 1, (), generator=g))


def _call(fn, *args):
    """The learner's function on copies of the inputs and modules, so that changing them spoils nothing."""
    return fn(*(a.clone() if isinstance(a, torch.Tensor) else copy.deepcopy(a) for a in args))


@contextlib.contextmanager
def _said(what: str, advice: str):
    """A learner's crash on these inputs, said as a lost check with ``advice``."""
    try:
        yield
    except NotImplementedError:
        raise
    except (RuntimeError, LookupError, ValueError, TypeError) as error:
        raise AssertionError(f"{what} raised {type(error).__name__}: {error}. {advice}") from None


# ViLT's input ------------------------------------------------------------------------------

def _vilt_problems(g: torch.Generator):
    """(model, ids, attention_mask, pixels, what): random ViLTs, questions right-padded to several lengths."""
    for width, heads, size, patch, length in [(32, 2, 32, 8, 7), (16, 2, 24, 8, 12), (24, 3, 16, 4, 5)]:
        config = ViltConfig(width=width, layers=1, heads=heads, image_size=size, patch_size=patch,
                            vocab_size=50, max_length=12, answers=7)
        model = randomized(ViLT(config), g)
        batch = _ints(2, 4, g)
        lengths = torch.tensor([length] + [_ints(1, length - 1, g) for _ in range(batch - 1)])
        mask = (torch.arange(length) < lengths[:, None]).long()                      # (B, T), one row full
        ids = torch.randint(1, config.vocab_size, (batch, length), generator=g) * mask  # padding is id 0
        pixels = torch.randn(batch, 3, size, size, generator=g)
        what = (f"vilt_input of {batch} questions of {length} tokens (lengths {lengths.tolist()}) and "
                f"{size}x{size} images in {patch}x{patch} patches (width {width})")
        yield model, ids, mask, pixels, what


def _vilt_answer(fn, model, ids, mask, pixels, what: str):
    """The learner's (sequence, key mask), checked to be a pair whose sequence has the batch and the width."""
    with _said(what, "the text takes the first T rows of its position table, the image all 1 + N rows of its "
                     "own; the convolution's grid becomes N patches of width D"):
        answer = _call(fn, model, ids, mask, pixels)
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise AssertionError(f"{what} should return two things, the sequence and its key mask; got "
                             f"{type(answer).__name__}")
    x = expect_tensor(answer[0], what=f"{what}: the sequence")
    if x.dim() != 3 or x.shape[0] != len(ids) or x.shape[2] != model.config.width:
        raise AssertionError(f"{what}: the sequence has shape {tuple(x.shape)}, expected (batch {len(ids)}, "
                             f"tokens, width {model.config.width})")
    return x, answer[1]


def _parts(model: ViLT, ids: torch.Tensor, pixels: torch.Tensor):
    """What the mistakes are made of: words, positions, segment, patches (reading order), class token."""
    T, patches = ids.shape[1], model.patch_embed(pixels)                              # (B, D, g, g)
    return dict(words=model.token_embedding(ids), positions=model.position_embedding[:T],
                segment=model.segment_embedding[0], types=model.modality_embedding,
                patches=patches.flatten(2).transpose(1, 2),                          # (B, N, D)
                scrambled=patches.reshape(len(ids), -1, patches.shape[1]),           # a reshape, not a transpose
                cls=model.class_embedding.expand(len(ids), 1, -1))


def _text_mistakes(model: ViLT, ids: torch.Tensor, pixels: torch.Tensor):
    p, ln, T = _parts(model, ids, pixels), model.ln_embed, ids.shape[1]
    w, pos, seg, types = p["words"], p["positions"], p["segment"], p["types"]
    image_first = torch.cat([model.embed_image(pixels), model.embed_text(ids)], dim=1)[:, :T]
    return [("add the text row of the modality-type embedding to every word: without it nothing tells a word "
             "from a patch", ln(w + pos + seg)),
            ("the words are text: they take the modality type's text row, not the image's",
             ln(w + pos + seg) + types[IMAGE]),
            ("add the modality type after the text LayerNorm, not inside it", ln(w + pos + seg + types[TEXT])),
            ("BERT's embeddings include the segment embedding, row 0 for every word", ln(w + pos) + types[TEXT]),
            ("each word adds the position embedding of its place", ln(w + seg) + types[TEXT]),
            ("normalize word + position + segment with the text LayerNorm", w + pos + seg + types[TEXT]),
            ("the sequence is the words first, then the image tokens", image_first)]


def _image_mistakes(model: ViLT, ids: torch.Tensor, pixels: torch.Tensor):
    p, ipos, types = _parts(model, ids, pixels), model.image_position_embedding, model.modality_embedding
    patches, cls, N = p["patches"], p["cls"], p["patches"].shape[1]
    tokens = torch.cat([cls, patches], dim=1)
    image_first = torch.cat([model.embed_image(pixels), model.embed_text(ids)], dim=1)[:, ids.shape[1]:]
    return [("add the image row of the modality-type embedding to every image token, the class token included",
             tokens + ipos),
            ("the image tokens take the modality type's image row, not the text's", tokens + ipos + types[TEXT]),
            ("the class token holds the first image position and the patches the rest: add all 1 + N positions "
             "after the class token is in place", torch.cat([cls, patches + ipos[1:]], 1) + types[IMAGE]),
            ("the class token holds the first image position: the patches take positions 1 to N, not 0 to N - 1",
             torch.cat([cls, patches + ipos[:N]], 1) + types[IMAGE]),
            ("the class token comes before the patches", torch.cat([patches, cls], 1) + ipos + types[IMAGE]),
            ("read the grid in row-major order with the width last: flatten the two grid axes, then move the "
             "width to the end (a reshape mixes channels and patches)",
             torch.cat([cls, p["scrambled"]], 1) + ipos + types[IMAGE]),
            ("the sequence is the words first, then the image tokens", image_first)]


def _check_text(fn, seed: int) -> None:
    g = _gen(seed)
    for model, ids, mask, pixels, what in _vilt_problems(g):
        with torch.no_grad():
            expected, _ = model.embed(ids, mask, pixels)
            x, _ = _vilt_answer(fn, model, ids, mask, pixels, what)
            T = ids.shape[1]
            if x.shape[1] < T:
                raise AssertionError(f"{what}: the sequence has {x.shape[1]} tokens; its first {T} are the words")
            expect_like(x[:, :T], expected[:, :T], lambda: _text_mistakes(model, ids, pixels),
                        f"{what}: the words (the first {T} tokens)")


def _check_image(fn, seed: int) -> None:
    g = _gen(seed)
    for model, ids, mask, pixels, what in _vilt_problems(g):
        with torch.no_grad():
            expected, _ = model.embed(ids, mask, pixels)
            x, _ = _vilt_answer(fn, model, ids, mask, pixels, what)
            T, N = ids.shape[1], model.config.grid_size ** 2
            if x.shape != expected.shape:
                raise AssertionError(f"{what}: the sequence has {x.shape[1]} tokens, expected {expected.shape[1]}: "
                                     f"the {T} words, then the class token and the {N} patches")
            expect_like(x[:, T:], expected[:, T:], lambda: _image_mistakes(model, ids, pixels),
                        f"{what}: the image tokens (after the {T} words)")


def _check_keys(fn, seed: int) -> None:
    g = _gen(seed)
    for model, ids, mask, pixels, what in _vilt_problems(g):
        with torch.no_grad():
            _, expected = model.embed(ids, mask, pixels)
            _, keys = _vilt_answer(fn, model, ids, mask, pixels, what)
        what, T = f"{what}: the key mask", ids.shape[1]
        keys = expect_tensor(keys, what=what)
        if keys.shape != expected.shape:
            raise AssertionError(f"{what} has shape {tuple(keys.shape)}, expected {tuple(expected.shape)}: one row "
                                 f"per question, with an axis of size 1 for the heads and one for the queries, "
                                 f"which all share it")
        if keys.dtype != torch.bool:
            raise AssertionError(f"{what} is {str(keys.dtype)[6:]}: a boolean mask, True where a key may be read")
        if torch.equal(keys, expected):
            continue
        hints = [("padding words must be hidden from every query: take the attention mask for the words",
                  torch.ones_like(expected)),
                 ("True marks the keys that may be read, not the hidden ones", ~expected),
                 ("image tokens are always real: they are visible to every query",
                  torch.cat([expected[..., :T], torch.zeros_like(expected[..., T:])], dim=-1))]
        row, _, _, key = (keys != expected).nonzero()[0].tolist()
        kind = ("a padding word" if key < T and not mask[row, key] else "a word" if key < T else
                "the image's class token" if key == T else "a patch")
        hint = next((f". {h}" for h, wrong in hints if torch.equal(keys, wrong)), "")
        raise AssertionError(f"{what}: in question {row}, key {key} ({kind}) is "
                             f"{'visible' if keys[row, 0, 0, key] else 'hidden'}; it should be "
                             f"{'visible' if expected[row, 0, 0, key] else 'hidden'}{hint}")


# Soft scores and their binary cross-entropy ------------------------------------------------

VOCABULARY = ["yes", "no", "2", "3", "4", "red", "blue", "green", "circle", "square", "left", "right"]
OUTSIDE = ["maybe", "7", "purple", "nothing"]  # answers humans gave that the model cannot score


def _human_answers(g: torch.Generator, vocabulary: list[str], outside: bool) -> list[str]:
    """Ten humans' answers to one question: two to four different ones, their counts adding up to ten."""
    pool = vocabulary + (OUTSIDE if outside else [])
    chosen = [pool[i] for i in torch.randperm(len(pool), generator=g)[:_ints(2, 4, g)].tolist()]
    cuts = sorted(torch.randperm(9, generator=g)[:len(chosen) - 1].add(1).tolist())  # ten split in parts
    counts = [b - a for a, b in zip([0] + cuts, cuts + [10])]
    answers = sum(([answer] * count for answer, count in zip(chosen, counts)), [])
    return [answers[i] for i in torch.randperm(len(answers), generator=g).tolist()]


def _answers_problems(g: torch.Generator):
    """(answers per question, vocabulary, what): a few vocabularies, one fixed question of every count."""
    fixed = ["2"] * 4 + ["3"] * 3 + ["red"] * 2 + ["maybe"]   # over three, three, under three, outside
    for size, questions, outside in [(12, 5, True), (6, 4, False), (9, 6, True)]:
        picked = [VOCABULARY[i] for i in torch.randperm(len(VOCABULARY), generator=g)[:size].tolist()]
        picked += [answer for answer in ("2", "3", "red") if answer not in picked]   # the fixed question's
        vocabulary = [picked[i] for i in torch.randperm(len(picked), generator=g).tolist()]
        answers = [_human_answers(g, vocabulary, outside) for _ in range(questions - 1)]
        answers.insert(_ints(0, questions - 1, g), fixed)
        yield answers, vocabulary, f"soft_scores of {questions} questions over {len(vocabulary)} answers"


def _counts(answers_per_question, vocabulary) -> torch.Tensor:
    return torch.tensor([[float(answers.count(word)) for word in vocabulary] for answers in answers_per_question])


def _score_mistakes(answers_per_question, vocabulary):
    counts = _counts(answers_per_question, vocabulary)
    majority = F.one_hot(counts.argmax(dim=1), len(vocabulary)).float()
    return [("an answer scores min(1, humans who gave it / 3): three humans are enough for full marks, so "
             "clip at 1", counts / 3),
            ("divide the count by 3, not by the number of humans: three of ten agreeing is already fully right",
             counts / counts.sum(dim=1, keepdim=True).clamp(min=1)),
            ("soft scores, not one hard label: every answer a human gave gets its share, not only the most "
             "common one", majority),
            ("an answer one or two humans gave is only partly right: 1/3 or 2/3", (counts > 0).float())]


def _check_scores(fn, seed: int) -> None:
    g = _gen(seed)
    for answers, vocabulary, what in _answers_problems(g):
        expected = vqa_soft_scores(answers, vocabulary)
        with _said(what, "answers outside the vocabulary cannot be predicted: leave them out"):
            got = expect_tensor(_call(fn, answers, vocabulary), shape=expected.shape, what=what)
        expect_like(got, expected, _score_mistakes(answers, vocabulary), what)


def _bce_mistakes(logits: torch.Tensor, targets: torch.Tensor):
    A = targets.shape[1]
    hard = F.one_hot(targets.argmax(dim=1), A).float()
    bce = lambda t: F.binary_cross_entropy_with_logits(logits, t)  # noqa: E731
    return [("train against the soft scores, not a one-hot of the best answer: an answer two humans gave "
             "is 2/3 right", bce(hard) * A),
            ("multiply the mean by the number of answers: the loss is the sum over answers, averaged over "
             "questions", bce(targets)),
            ("average over the questions: the sum over answers, then the mean over questions",
             bce(targets) * targets.numel()),
            ("each answer is its own yes/no question: a sigmoid per answer, not a softmax over all of them",
             -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()),
            ("for a large logit the sigmoid rounds to exactly 0 or 1 and its log breaks: compute from the "
             "logits, log σ(x) = −softplus(−x) and log(1 − σ(x)) = −softplus(x)",
             F.binary_cross_entropy(logits.sigmoid(), targets) * A)]


def _check_bce(fn, seed: int) -> None:
    g = _gen(seed)
    for (answers, vocabulary, _), scale in zip(_answers_problems(g), (3.0, 2.0, 40.0)):
        targets = vqa_soft_scores(answers, vocabulary)
        logits = torch.randn(targets.shape, generator=g) * scale
        what = (f"soft_score_bce of {tuple(logits.shape)} logits" +
                (f", some as large as {logits.abs().max().item():.0f}" if scale > 10 else ""))
        expected = vqa_bce_loss(logits, targets)
        got = expect_tensor(_call(fn, logits, targets), what=what)
        if got.shape != ():
            raise AssertionError(f"{what} has shape {tuple(got.shape)}: the loss is one number, a tensor of "
                                 f"shape ()")
        if not torch.isfinite(got):
            raise AssertionError(f"{what} is {got.item()}, where the reference gives {expected.item():.4g}. For a "
                                 f"large logit the sigmoid rounds to exactly 0 or 1 and its log is infinite: "
                                 f"compute from the logits, log σ(x) = −softplus(−x), "
                                 f"log(1 − σ(x)) = −softplus(x)")
        expect_like(got, expected, lambda: _bce_mistakes(logits, targets), what, tol=1e-4)


# Hard negatives ----------------------------------------------------------------------------

def _positive_pattern(g: torch.Generator, rows: int, columns: int, all_positive: tuple = ()) -> torch.Tensor:
    """(rows, columns) bool: one or two positives per row (a caption of two images, two captions of one
    image), and every entry positive in the rows ``all_positive``."""
    positives = torch.zeros(rows, columns, dtype=torch.bool)
    for row in range(rows):
        positives[row, torch.randperm(columns, generator=g)[:_ints(1, 2, g)]] = True
    positives[list(all_positive)] = True
    return positives


DRAW_ADVICE = "the weights are softmax over each row's entries with the positives left out; draw one column per row"


def _draws(fn, similarity, positives, generator, what: str, advice: str = DRAW_ADVICE) -> torch.Tensor:
    with _said(what, advice):
        drawn = expect_tensor(_call(fn, similarity, positives, generator), shape=(len(similarity),), what=what)
    if drawn.is_floating_point() or drawn.dtype == torch.bool:
        raise AssertionError(f"{what} is {str(drawn.dtype)[6:]}: one column index per row, as integers")
    return drawn.long()


def _check_never_positive(fn, seed: int) -> None:
    g = _gen(seed)
    for rows, columns, repeats, transposed in [(4, 6, 300, False), (5, 3, 300, True)]:
        # one or two positives for each row that is drawn for: each image, or each caption when transposed
        positives = _positive_pattern(g, columns, rows).T if transposed else _positive_pattern(g, rows, columns)
        # the positives score highest, as a trained ITC scores them: a softmax over the whole row draws them
        similarity = torch.rand(rows, columns, generator=g) * 3 - 2 + 4 * positives
        if transposed:   # the wrong image for each caption: the (images, captions) problem read by columns
            similarity, positives = similarity.repeat(1, repeats).T, positives.repeat(1, repeats).T
            what = (f"sample_hard_negatives on the transpose of a ({rows}, {columns * repeats}) similarity "
                    f"(a wrong image for each caption)")
        else:
            similarity, positives = similarity.repeat(repeats, 1), positives.repeat(repeats, 1)
            what = f"sample_hard_negatives on a ({rows * repeats}, {columns}) similarity"
        drawn = _draws(fn, similarity, positives, _gen(seed + 1000), what)
        width = similarity.shape[1]
        if ((drawn < 0) | (drawn >= width)).any():
            row = int(((drawn < 0) | (drawn >= width)).nonzero()[0])
            raise AssertionError(f"{what}: row {row} drew column {int(drawn[row])}, outside 0 to {width - 1}, "
                                 f"though it has wrong entries to draw from")
        hit = positives[torch.arange(len(drawn)), drawn]
        if hit.any():
            row = int(hit.nonzero()[0])
            raise AssertionError(f"{what}: row {row} drew column {int(drawn[row])}, one of its positives; "
                                 f"{int(hit.sum())} of the {len(drawn)} rows drew a positive. A positive labelled "
                                 f"'no match' teaches the head to lie: leave the positives out of the softmax, so "
                                 f"their weight is exactly zero")


def _frequencies(drawn: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
    """(rows, columns): how often each base row (row i of the repeated matrix is base row i % rows) drew each column."""
    counts = torch.zeros(rows, columns)
    counts.index_put_((torch.arange(len(drawn)) % rows, drawn), torch.ones(len(drawn)), accumulate=True)
    return counts / counts.sum(dim=1, keepdim=True)


def _check_softmax(fn, seed: int) -> None:
    g = _gen(seed)
    for rows, columns, repeats, transposed in [(5, 7, 2000, False), (4, 3, 2000, True)]:
        positives = _positive_pattern(g, rows, columns)
        positives[_ints(0, rows - 1, g)] = False           # a caption no image in the batch matches
        similarity = torch.randn(rows, columns, generator=g) * 1.2
        dominant = _ints(0, rows - 1, g)                   # a near miss far above the other wrong entries
        similarity[dominant, (~positives[dominant]).nonzero()[0]] = 9.0
        similarity = similarity.masked_fill(positives, -30.0)  # positives too unlikely to matter here
        expected = similarity.masked_fill(positives, float("-inf")).softmax(dim=1)
        sims, pos = similarity.repeat(repeats, 1), positives.repeat(repeats, 1)      # row i is base row i % rows
        what = f"sample_hard_negatives on a ({rows * repeats}, {columns}) similarity"
        if transposed:   # the same values, read as the transpose of a (columns, rows * repeats) matrix
            sims, pos = sims.T.contiguous().T, pos.T.contiguous().T
            what = f"sample_hard_negatives on the transpose of a ({columns}, {rows * repeats}) similarity"
        what += f" (each of {rows} rows repeated {repeats} times)"
        drawn = _draws(fn, sims, pos, _gen(seed + 2000), what)
        if ((drawn < 0) | (drawn >= columns)).any():
            raise AssertionError(f"{what}: a row drew a column outside 0 to {columns - 1}")
        freq = _frequencies(drawn, rows, columns)
        gap = (freq - expected).abs()
        if gap.max() <= 0.05:
            continue
        row, column = divmod(int(gap.argmax()), columns)
        message = (f"{what}: row {row} drew column {column} in {freq[row, column]:.1%} of its draws; softmax "
                   f"over its wrong entries gives {expected[row, column]:.1%}")
        if positives[row, column]:
            message += f". Column {column} is a positive of row {row}: its weight must be exactly zero"
        wrong = (~positives).float()
        per_row = [drawn[torch.arange(len(drawn)) % rows == r] for r in range(rows)]
        if all(d.unique().numel() == 1 for d in per_row):
            message += (". Every draw of a row gave the same column: draw at random, with probability softmax "
                        "over the wrong entries, not the largest alone; the other near misses matter too")
        elif (freq - wrong / wrong.sum(dim=1, keepdim=True)).abs().max() <= 0.05:
            message += (". The draws ignore the similarities: weight each wrong entry by the softmax of its "
                        "similarity, so the near misses are drawn most")
        if row == dominant:
            message += ". This row has one wrong entry far above the others: it should be drawn nearly always"
        raise AssertionError(message)


def _check_no_negative(fn, seed: int) -> None:
    g = _gen(seed)
    for rows, columns, full in [(6, 5, (1, 4)), (4, 7, (0,)), (3, 1, (0, 1, 2))]:
        positives = _positive_pattern(g, rows, columns, full)
        similarity = torch.randn(rows, columns, generator=g) * 2
        what = (f"sample_hard_negatives on a ({rows}, {columns}) similarity whose row(s) {list(full)} hold only "
                f"positives")
        drawn = _draws(fn, similarity, positives, _gen(seed + 3000), what,
                       "a row with no wrong entry has nothing to draw from (a softmax over nothing is nan): give "
                       "it -1 and draw only for the other rows")
        for row in range(rows):
            if row in full and drawn[row] != NO_NEGATIVE:
                raise AssertionError(f"{what}: row {row} has no wrong entry, so it gets -1; got {int(drawn[row])}")
            if row not in full and not 0 <= drawn[row] < columns:
                raise AssertionError(f"{what}: row {row} has wrong entries, so it draws a column from 0 to "
                                     f"{columns - 1}; got {int(drawn[row])}")


def _check_generator(fn, seed: int) -> None:
    g = _gen(seed)
    positives = _positive_pattern(g, 60, 6)
    similarity = torch.randn(60, 6, generator=g)
    what = "sample_hard_negatives on a (60, 6) similarity, called twice with generators seeded alike"
    first = _draws(fn, similarity, positives, _gen(seed + 4000), what)
    second = _draws(fn, similarity, positives, _gen(seed + 4000), what)
    if not torch.equal(first, second):
        raise AssertionError(f"{what}: the draws differ in {int((first != second).sum())} of 60 rows. Draw with "
                             f"the generator you are given, not torch's global one, so that a training run "
                             f"can be repeated")


CHECKS = [  # each runs in milliseconds to a second on tiny inputs
    Check("vilt_input: the words, as BERT embeds them, plus the text type", "vilt_input", 2, _check_text,
          timeout=10, references=OWN["vilt_input"]),
    Check("vilt_input: the class token and patches, their positions, plus the image type", "vilt_input", 2,
          _check_image, timeout=10, references=OWN["vilt_input"]),
    Check("vilt_input: the key mask hides padding words, never an image token", "vilt_input", 1, _check_keys,
          timeout=10, references=OWN["vilt_input"]),
    Check("soft_scores: min(1, humans / 3) per answer", "soft_scores", 1, _check_scores, timeout=5,
          references=OWN["soft_scores"]),
    Check("soft_score_bce: BCE with logits against the soft scores, times the answers", "soft_score_bce", 1,
          _check_bce, timeout=5, references=OWN["soft_score_bce"]),
    Check("sample_hard_negatives never draws a positive", "sample_hard_negatives", 1, _check_never_positive,
          timeout=10, references=OWN["sample_hard_negatives"]),
    Check("sample_hard_negatives draws by softmax over the wrong entries", "sample_hard_negatives", 2,
          _check_softmax, timeout=10, references=OWN["sample_hard_negatives"]),
    Check("sample_hard_negatives gives -1 to a row of positives only", "sample_hard_negatives", 1,
          _check_no_negative, timeout=10, references=OWN["sample_hard_negatives"]),
    Check("sample_hard_negatives draws with the generator it is given", "sample_hard_negatives", 1,
          _check_generator, timeout=10, references=OWN["sample_hard_negatives"]),
]
