"""python -m minimodal classify / search, run in-process on rendered shapes and the shapes CLIP."""

import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from minimodal import cli
from minimodal.__main__ import main
from minimodal.clip import CLIP
from minimodal.clip_api import load, tokenize
from minimodal.pretrained import shapes_world

PICKS = [("red", "circle"), ("blue", "square"), ("green", "triangle"),
         ("yellow", "circle"), ("purple", "square"), ("orange", "triangle")]
SHAPE_LABELS = ["a red circle", "a blue square", "a green triangle"]


@pytest.fixture(scope="module", autouse=True)
def course_checkpoint():
    """Build the shapes CLIP before any command runs, so no test's captured output holds its training."""
    from minimodal.pretrained import load_shapes_clip
    load_shapes_clip()


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    """One PNG per pick, named like red-circle.png, rendered from the test split."""
    batch = shapes_world(min_shapes=1, max_shapes=1).sample("test", 200)
    folder = tmp_path_factory.mktemp("shapes")
    for image, (shape,) in zip(batch.images, batch.scenes):
        path = folder / f"{shape.color}-{shape.shape}.png"
        if (shape.color, shape.shape) in PICKS and not path.exists():
            Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy()).save(path)
    assert len(list(folder.iterdir())) == len(PICKS)
    return folder


@pytest.fixture
def folder(shapes_dir, tmp_path):
    """A fresh copy for each search test: the cache is written into the folder searched."""
    return shutil.copytree(shapes_dir, tmp_path / "images")


@pytest.fixture
def embedded(monkeypatch):
    """The number of images each encode_image call embeds, call by call."""
    counts = []
    encode_image = CLIP.encode_image

    def counting(self, pixels):
        counts.append(len(pixels))
        return encode_image(self, pixels)
    monkeypatch.setattr(CLIP, "encode_image", counting)
    return counts


def run(capsys, *argv):
    """(exit status, stdout, stderr) of python -m minimodal, on the CPU."""
    status = main([*map(str, argv), "--device", "cpu"])
    out, err = capsys.readouterr()
    return status, out, err


def table(out: str) -> dict[str, list[tuple[str, float]]]:
    """classify's output as {image: [(label, percent), ...]} in printed order."""
    rows = {}
    for line in out.splitlines():
        if line.startswith("  "):
            label, percent = re.fullmatch(r"  (.+?)\s+(\d+\.\d)%", line).groups()
            rows[image].append((label, float(percent)))
        elif line:
            image = line
            rows[image] = []
    return rows


def ranking(out: str) -> list[tuple[int, float, str]]:
    """search's output as [(rank, score, file name), ...]."""
    rows = [line.split(maxsplit=2) for line in out.splitlines()]
    return [(int(rank), float(score), os.path.basename(path)) for rank, score, path in rows]


def test_the_entry_point_documents_both_commands():
    for command, expected in (("classify", "--template"), ("search", "FOLDER")):
        done = subprocess.run([sys.executable, "-m", "minimodal", command, "--help"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and expected in done.stdout


def test_classify_gives_the_red_circle_the_top_probability(shapes_dir, capsys):
    image = shapes_dir / "red-circle.png"
    status, out, _ = run(capsys, "classify", image, "--labels", *SHAPE_LABELS)
    assert status == 0
    assert table(out)[str(image)][0][0] == "a red circle"


def test_probabilities_of_each_image_sum_to_100_percent_most_likely_first(shapes_dir, capsys):
    images = [shapes_dir / "red-circle.png", shapes_dir / "purple-square.png"]
    labels = ["a circle", "red", "a square", "a purple square"]
    status, out, _ = run(capsys, "classify", *images, "--labels", *labels)
    assert status == 0
    rows = table(out)
    assert list(rows) == list(map(str, images))
    for image_rows in rows.values():
        assert sorted(label for label, _ in image_rows) == sorted(labels)
        percents = [p for _, p in image_rows]
        assert percents == sorted(percents, reverse=True)
        assert sum(p for _, p in image_rows) == pytest.approx(100, abs=0.05 * len(labels))


def by_hand(image, labels, templates) -> dict[str, float]:
    """Percentages from caption-by-caption embeddings: normalize, average over templates, normalize."""
    model, preprocess = load("shapes", device="cpu")
    with torch.no_grad():
        pixels = F.normalize(model.encode_image(preprocess(image)[None]), dim=-1)[0]    # (E,)
        classes = []
        for label in labels:
            units = [F.normalize(model.encode_text(tokenize([t.format(label)])), dim=-1)[0]
                     for t in templates]                                             # T of (E,)
            mean = torch.stack(units).mean(dim=0)
            classes.append(mean / mean.norm())
        logits = model.logit_scale.exp() * torch.stack(classes) @ pixels             # (C,)
    return dict(zip(labels, (100 * logits.softmax(dim=0)).tolist()))


def test_several_templates_are_averaged_as_prompt_ensembling(shapes_dir, capsys):
    image, labels = shapes_dir / "red-circle.png", ["a circle", "red", "a square"]
    templates = ["{}", "a picture of {}"]
    status, out, _ = run(capsys, "classify", image, "--labels", *labels,
                         *(arg for t in templates for arg in ("--template", t)))
    assert status == 0
    printed = dict(table(out)[str(image)])
    expected, bare = by_hand(image, labels, templates), by_hand(image, labels, ["{}"])
    assert max(abs(expected[label] - bare[label]) for label in labels) > 10  # the ensemble matters here
    for label in labels:
        assert printed[label] == pytest.approx(expected[label], abs=0.051)


@pytest.mark.parametrize("argv, message", [
    (["--labels", "a circle", "--template", "a photo"], "'a photo' must hold exactly one '{}'"),
    (["--labels", "a circle", "--model", "no-such-model"], "cannot load model 'no-such-model'"),
])
def test_classify_errors_are_one_line_and_exit_2(shapes_dir, capsys, argv, message):
    status, out, err = run(capsys, "classify", shapes_dir / "red-circle.png", *argv)
    assert (status, out) == (2, "")
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_classify_names_an_image_it_cannot_read(tmp_path, capsys):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image")
    status, _, err = run(capsys, "classify", bad, "--labels", "a circle")
    assert status == 2 and err.startswith("error: ") and "notes.png" in err


def test_search_ranks_the_red_circle_first(folder, capsys):
    status, out, _ = run(capsys, "search", folder, "a red circle", "-k", 3)
    assert status == 0
    rows = ranking(out)
    assert [rank for rank, _, _ in rows] == [1, 2, 3]
    assert rows[0][2] == "red-circle.png"
    assert rows[0][1] > rows[1][1] >= rows[2][1]


def test_k_larger_than_the_folder_prints_every_image(folder, capsys):
    status, out, _ = run(capsys, "search", folder, "a red circle", "-k", 50)
    assert status == 0
    assert sorted(name for _, _, name in ranking(out)) == sorted(f"{c}-{s}.png" for c, s in PICKS)


def test_a_second_search_reads_every_embedding_from_the_cache(folder, capsys, embedded):
    run(capsys, "search", folder, "a red circle")
    assert (folder / ".minimodal-cache" / "shapes.pt").is_file()
    assert sum(embedded) == len(PICKS)
    embedded.clear()
    status, out, _ = run(capsys, "search", folder, "a blue square")
    assert status == 0 and ranking(out)[0][2] == "blue-square.png"
    assert embedded == []


def test_a_replaced_file_alone_is_embedded_again(folder, capsys, embedded):
    run(capsys, "search", folder, "a red circle")
    embedded.clear()
    replaced = folder / "purple-square.png"
    shutil.copyfile(folder / "red-circle.png", replaced)
    later = replaced.stat().st_mtime_ns + 10**9  # a clearly newer time, whatever the clock's grain
    os.utime(replaced, ns=(later, later))
    status, out, _ = run(capsys, "search", folder, "a red circle", "-k", 2)
    assert status == 0 and embedded == [1]
    assert sorted(name for _, _, name in ranking(out)) == ["purple-square.png", "red-circle.png"]


def test_other_weights_invalidate_the_whole_cache(folder, capsys, embedded, monkeypatch):
    run(capsys, "search", folder, "a red circle")
    embedded.clear()
    monkeypatch.setattr(cli, "fingerprint", lambda model: "retrained")
    run(capsys, "search", folder, "a red circle")
    assert sum(embedded) == len(PICKS)


def test_a_corrupt_image_is_skipped_with_one_warning(folder, capsys):
    (folder / "notes.png").write_bytes(b"not an image")
    status, out, err = run(capsys, "search", folder, "a red circle", "-k", 50)
    assert status == 0
    assert len(ranking(out)) == len(PICKS) and ranking(out)[0][2] == "red-circle.png"
    warnings = err.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: skipped notes.png")


def test_a_folder_without_images_is_an_error(tmp_path, capsys):
    (tmp_path / "readme.txt").write_text("no pictures here")
    status, out, err = run(capsys, "search", tmp_path, "a red circle")
    assert (status, out) == (2, "")
    assert err.startswith("error: no images in") and len(err.splitlines()) == 1
