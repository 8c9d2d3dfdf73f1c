"""The validation helpers: one stable line on success, a useful diagnosis on failure."""

import pytest
import torch

from minimodal.check import CheckFailed, assert_close, assert_close_layers, assert_equal, claim


def test_success_prints_one_stable_line(capsys):
    assert_close(torch.ones(3), torch.ones(3) + 1e-7, what="image embeddings",
                 against="transformers CLIPVisionModel")
    assert capsys.readouterr().out == \
        "✓ image embeddings match transformers CLIPVisionModel (atol 1e-05)\n"


def test_failure_gives_the_max_difference_and_where():
    expected = torch.zeros(2, 3)
    actual = expected.clone()
    actual[1, 2] = 0.5
    with pytest.raises(CheckFailed) as err:
        assert_close(actual, expected, what="logits", against="reference")
    assert str(err.value) == ("✗ logits differ from reference (atol 1e-05): max abs diff 0.5; "
                              "worst at index (1, 2): 0.5 vs 0")


def test_rtol_scales_with_the_expected_value(capsys):
    assert_close(torch.tensor([1000.0]), torch.tensor([1000.05]), what="x", against="y",
                 atol=1e-5, rtol=1e-4)
    assert "rtol 0.0001" in capsys.readouterr().out
    with pytest.raises(CheckFailed):
        assert_close(torch.tensor([1000.0]), torch.tensor([1000.5]), what="x", against="y",
                     atol=1e-5, rtol=1e-4)


def test_shape_mismatch_and_nan_are_named():
    with pytest.raises(CheckFailed, match=r"shape \(2,\) is not the expected \(3,\)"):
        assert_close(torch.ones(2), torch.ones(3), what="x", against="y")
    with pytest.raises(CheckFailed, match=r"non-finite value nan at index \(1,\)"):
        assert_close(torch.tensor([1.0, float("nan")]), torch.ones(2), what="x", against="y")


def test_layers_name_the_first_that_diverges(capsys):
    good = [torch.ones(4) * i for i in range(5)]
    assert_close_layers(good, [g.clone() for g in good], what="hidden states", against="ref")
    assert capsys.readouterr().out == "✓ hidden states match ref at all 5 layers (atol 0.001, rtol 0.0001)\n"
    bad = [g.clone() for g in good]
    bad[2][1] += 1
    bad[4][0] += 1
    with pytest.raises(CheckFailed, match="first diverging layer is block 2"):
        assert_close_layers(bad, good, what="hidden states", against="ref",
                            names=[f"block {i}" for i in range(5)])


def test_exact_equality_shows_the_first_mismatch(capsys):
    assert_equal([49406, 320, 49407], [49406, 320, 49407], what="token ids", against="open_clip")
    assert capsys.readouterr().out == "✓ token ids equal open_clip exactly\n"
    with pytest.raises(CheckFailed, match=r"1 of 3 differ; first at index \(1,\): 320 vs 321"):
        assert_equal([49406, 320, 49407], [49406, 321, 49407], what="token ids", against="open_clip")


def test_claim():
    with pytest.raises(CheckFailed, match="✗ accuracy at least 95%: got 90%"):
        claim(False, "accuracy at least 95%", "got 90%")
