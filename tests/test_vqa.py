"""The VQA baseline: vocabulary, shapes, fusion, a small run that learns, and the baselines."""

from collections import Counter

import pytest
import torch
import torch.nn as nn

from minimodal.data import ShapesConfig, ShapesWorld
from minimodal.train import TrainConfig
from minimodal.vocab import UNK, WordVocab
from minimodal.vqa import CLIPImageEncoder, FusedClassifier, VQAConfig, VQAModel, frozen_features, fuse
from minimodal.vqa_data import VQAData, shapes_vqa
from minimodal.vqa_train import accuracy_by_kind, blind_answers, confusion, majority_answer, predict, train_vqa

QUESTIONS = ["What color is the shape?", "is there a red shape?", "Is there a red circle?"]


def test_vocabulary_orders_words_by_frequency_and_maps_unknown_words_to_unk():
    vocab = WordVocab.build(QUESTIONS)
    assert vocab.words[:2] == ["<pad>", UNK]
    assert vocab.words[2:7] == ["is", "a", "red", "shape", "there"]  # 3 times, then ties alphabetical
    assert len(vocab) == 2 + len({w for q in QUESTIONS for w in q.lower().rstrip("?").split()})
    ids = vocab.encode("Is there a BLUE triangle?!")
    assert ids[:2] == [vocab.ids["is"], vocab.ids["there"]]
    assert ids[3:] == [vocab.ids[UNK]] * 2


@pytest.mark.parametrize("question", ["", "   ", "?!"])
def test_a_question_without_words_is_a_clear_error(question):
    with pytest.raises(ValueError, match="needs at least one word"):
        WordVocab.build(QUESTIONS).encode(question)


def test_batches_are_right_padded_with_their_lengths():
    vocab = WordVocab.build(QUESTIONS)
    ids, lengths = vocab.encode_batch(["red", "is there a red shape"])
    assert lengths.tolist() == [1, 5]
    assert ids.shape == (2, 5) and ids[0, 1:].eq(0).all() and ids[1].ne(0).all()


def test_answers_outside_the_vocabulary_are_rejected():
    vocab = WordVocab.build(QUESTIONS)
    with pytest.raises(ValueError, match=r"\['purple'\] are not in the answer vocabulary"):
        VQAData.encode(torch.zeros(1, 3, 64, 64), [0], ["what color?"], ["purple"], ["color"],
                       vocab, ["red", "blue"])


def tiny_world_data(n_images: int, split: str, vocab=None, answers=None):
    world = ShapesWorld(ShapesConfig(image_size=32, max_shapes=1, seed=3))
    batch = world.sample(split, n_images)
    questions = [qa.question for qas in batch.questions for qa in qas]
    vocab = vocab or WordVocab.build(questions)
    answers = answers or sorted({qa.answer for qas in batch.questions for qa in qas})
    return shapes_vqa(batch, vocab, answers), vocab, answers


@pytest.mark.parametrize("fusion", ["product", "concat"])
def test_model_shapes_for_both_fusions(fusion):
    config = VQAConfig(vocab_size=20, num_answers=7, fusion=fusion, fused_dim=16)
    model = VQAModel(config).eval()
    images = torch.rand(3, 3, 32, 32)
    ids, lengths = torch.randint(1, 20, (5, 6)), torch.tensor([6, 1, 3, 2, 6])
    logits = model(images, ids, lengths, image_index=torch.tensor([0, 2, 2, 1, 0]))
    assert logits.shape == (5, 7)
    assert model.classifier.head[0].in_features == (32 if fusion == "concat" else 16)
    # each question sees its own image: asked alone about that image, it gets the same logits
    torch.testing.assert_close(logits[3], model(images[1:2], ids[3:4], lengths[3:4])[0])


def test_fusions_are_the_product_and_the_image_first_concatenation():
    v, q = torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(fuse(v, q, "product"), v * q)
    torch.testing.assert_close(fuse(v, q, "concat")[:, :3], v)
    torch.testing.assert_close(fuse(v, q, "concat")[:, 3:], q)
    with pytest.raises(ValueError, match="fusion must be one of"):
        fuse(v, q, "sum")
    with pytest.raises(ValueError, match="fusion must be one of"):
        VQAConfig(vocab_size=5, num_answers=2, fusion="sum")


def test_classifier_is_relu_projections_fused_then_the_head():
    torch.manual_seed(0)
    classifier = FusedClassifier(VQAConfig(vocab_size=5, num_answers=4, image_dim=6, question_dim=5,
                                           fused_dim=8))
    v, q = torch.randn(3, 6), torch.randn(3, 5)
    by_hand = classifier.head(torch.relu(classifier.image_proj(v)) * torch.relu(classifier.question_proj(q)))
    torch.testing.assert_close(classifier(v, q), by_hand)


def test_question_encoder_starts_with_forget_bias_one():
    model = VQAModel(VQAConfig(vocab_size=5, num_answers=2, question_dim=4))
    cell = model.question_encoder.lstm.layers[0]
    total = cell.bias_ih + cell.bias_hh
    torch.testing.assert_close(total[4:8], torch.ones(4))


def test_encoder_of_the_wrong_width_is_a_clear_error():
    model = VQAModel(VQAConfig(vocab_size=5, num_answers=2, image_dim=8), image_encoder=nn.Identity())
    with pytest.raises(ValueError, match=r"\(B, 8\) features, got \(2, 6\)"):
        model(torch.randn(2, 6), torch.ones(2, 3, dtype=torch.long), torch.tensor([3, 1]))


def test_a_short_training_run_learns_to_use_the_image():
    train, vocab, answers = tiny_world_data(128, "train")
    test, _, _ = tiny_world_data(64, "test", vocab, answers)
    torch.manual_seed(0)
    model = VQAModel(VQAConfig(vocab_size=len(vocab), num_answers=len(answers), image_dim=32, fused_dim=64))
    history = train_vqa(model, train, TrainConfig(steps=240, lr=3e-3, weight_decay=1e-4,
                                                  grad_clip=None, progress=False), images_per_batch=16)
    assert history.loss[-1] < 0.5 * history.loss[0]
    accuracy = accuracy_by_kind(predict(model, test), test)
    blind = accuracy_by_kind(blind_answers(train, test), test)
    assert accuracy["color"] > blind["color"] + 0.3, (accuracy, blind)
    assert accuracy["all"] > blind["all"] + 0.1, (accuracy, blind)


def test_batches_depend_on_the_step_only():
    train, vocab, answers = tiny_world_data(32, "train")
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = VQAModel(VQAConfig(vocab_size=len(vocab), num_answers=len(answers), image_dim=8, fused_dim=8))
        runs.append(train_vqa(model, train, TrainConfig(steps=3, progress=False), images_per_batch=8).loss)
    assert runs[0] == runs[1]


def test_majority_and_blind_baselines_agree_with_an_independent_count():
    train, vocab, answers = tiny_world_data(200, "train")
    test, _, _ = tiny_world_data(80, "test", vocab, answers)
    world = ShapesWorld(ShapesConfig(image_size=32, max_shapes=1, seed=3))
    train_qas = [qa for qas in world.sample("train", 200).questions for qa in qas]
    test_qas = [qa for qas in world.sample("test", 80).questions for qa in qas]

    counts = Counter(qa.answer for qa in train_qas)
    top = max(counts.values())
    majority = min(a for a in counts if counts[a] == top)  # answers are sorted: lowest index wins
    assert answers[majority_answer(train)] == majority

    by_question = {}
    for qa in train_qas:
        by_question.setdefault(qa.question.lower(), Counter())[qa.answer] += 1
    expected = []
    for qa in test_qas:
        seen = by_question.get(qa.question.lower())
        if seen is None:
            expected.append(majority)
        else:
            best = max(seen.values())
            expected.append(min(a for a in seen if seen[a] == best))
    assert [answers[i] for i in blind_answers(train, test).tolist()] == expected
    right = [e == qa.answer for e, qa in zip(expected, test_qas)]
    assert accuracy_by_kind(blind_answers(train, test), test)["all"] == pytest.approx(sum(right) / len(right))


def test_accuracy_and_confusion_per_kind():
    data = VQAData(images=torch.zeros(1, 1), image_index=torch.zeros(5, dtype=torch.long),
                   question_ids=torch.ones(5, 1, dtype=torch.long), lengths=torch.ones(5, dtype=torch.long),
                   answers=torch.tensor([0, 1, 1, 2, 3]), kinds=["yes/no", "yes/no", "yes/no", "color", "color"],
                   answer_vocab=["yes", "no", "red", "blue"])
    predictions = torch.tensor([0, 0, 1, 2, 0])
    assert accuracy_by_kind(predictions, data) == pytest.approx({"all": 0.6, "color": 0.5, "yes/no": 2 / 3})
    names, counts = confusion(predictions, data, "color")
    assert names == ["red", "blue"]
    assert counts.tolist() == [[1, 0, 0], [0, 0, 1]]  # "yes" for a colour question is "other"
    with pytest.raises(ValueError, match="no question of kind 'count'"):
        confusion(predictions, data, "count")


def test_frozen_clip_features_are_computed_once_and_normalized_as_clip_expects():
    from minimodal.clip import CLIP
    from minimodal.pretrained import normalize, shapes_clip_config
    torch.manual_seed(0)
    clip = CLIP(shapes_clip_config()).eval()
    images = torch.rand(5, 3, 64, 64)
    features = frozen_features(CLIPImageEncoder(clip), images, batch_size=2)
    torch.testing.assert_close(features, clip.encode_image(normalize(images)).detach())
    model = VQAModel(VQAConfig(vocab_size=5, num_answers=3, image_dim=features.shape[1]),
                     image_encoder=nn.Identity())
    assert model(features, torch.ones(5, 2, dtype=torch.long), torch.full((5,), 2)).shape == (5, 3)
