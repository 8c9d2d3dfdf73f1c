"""The package's shape: imports run one way, modules stay short, dependencies are declared.

The map in ``minimodal/__init__.py`` promises an order (building blocks, towers, models,
training, entry points, with helpers beside them). These tests hold the code to it, so a
new module has to be placed in ``LEVEL`` and cannot quietly import upward.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "minimodal"

BESIDE, BLOCKS, TOWERS, MODELS, CONVERSION, TRAINING, ENTRY = range(7)
LEVEL = {
    **dict.fromkeys(["device", "check", "similarity", "bleu", "bpe", "tokenizer", "vocab", "hub", "loss",
                     "decoding", "train", "distributed", "data", "lm_tokenizer", "source",
                     "figures", "boxes", "matching", "detection_loss", "average_precision", "blip_loss"], BESIDE),
    **dict.fromkeys(["transformer", "mlp", "norm", "rope", "kv_cache", "lstm"], BLOCKS),
    **dict.fromkeys(["vit", "text", "bert", "lm"], TOWERS),
    **dict.fromkeys(["clip", "zeroshot", "retrieval", "vqa", "vqa_data", "lstm_decoder", "decoder",
                     "caption", "generate", "vilt", "blip", "llava", "resampler", "qformer", "flamingo", "owlvit"],
                    MODELS),
    **dict.fromkeys(["convert", "convert_bert", "convert_openai", "convert_llama", "convert_llava",
                     "convert_vilt", "convert_blip", "convert_flamingo", "convert_owlvit"], CONVERSION),
    **dict.fromkeys(["vqa_train", "pretrained", "vilt_recipe", "blip_recipe", "blip_eval", "lm_recipe", "lm_eval", "llava_recipe", "llava_eval",
                     "flamingo_recipe", "flamingo_eval", "owlvit_recipe", "owlvit_eval"], TRAINING),
    **dict.fromkeys(["clip_api", "cli", "tour", "grading", "__main__"], ENTRY),
}
# What a module-level import is called on PyPI, where the two differ.
DISTRIBUTION = {"PIL": "pillow"}
TOO_LONG = 300


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def top_module(path: Path) -> str:
    """minimodal/data/shapes.py -> 'data'; minimodal/vit.py -> 'vit'."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def minimodal_imports(tree: ast.AST) -> set[str]:
    """The top-level minimodal modules a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "minimodal":
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("minimodal.")}
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path):
    name = top_module(path)
    assert name in LEVEL, f"{name} is not placed in the layout: add it to LEVEL and to the map in __init__.py"
    upward = sorted(m for m in minimodal_imports(ast.parse(path.read_text())) - {name}
                    if LEVEL.get(m, ENTRY + 1) > LEVEL[name] or (LEVEL[name] == BESIDE and LEVEL[m] != BESIDE))
    assert not upward, f"{path.relative_to(REPO)} imports {upward}, which sit above it in the layout"


def test_every_module_is_in_the_package_map():
    documented = (PACKAGE / "__init__.py").read_text()
    missing = sorted(name for name in LEVEL if name != "__main__" and name not in documented)
    assert not missing, f"modules missing from the map in minimodal/__init__.py: {missing}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_long_modules_say_why(path):
    lines = len(path.read_text().splitlines())
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert lines <= TOO_LONG or f"Longer than {TOO_LONG} lines because" in docstring, (
        f"{path.relative_to(REPO)} has {lines} lines: split it, or say why in its docstring")


def test_module_level_imports_are_declared_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {dep.split(">")[0].split("=")[0].split(";")[0].strip().lower().replace("_", "-")
                for dep in project["dependencies"]}
    undeclared = set()
    for path in modules() + [PACKAGE / "__init__.py"]:
        for node in ast.parse(path.read_text()).body:  # module level only: lazy imports may be optional
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                top = name.split(".")[0]
                if top == "minimodal" or top in sys.stdlib_module_names or top == "__future__":
                    continue
                if DISTRIBUTION.get(top, top).lower().replace("_", "-") not in declared:
                    undeclared.add(f"{top} ({path.relative_to(REPO)})")
    assert not undeclared, f"imported at module level but not in pyproject's dependencies: {sorted(undeclared)}"


def test_grading_the_warmup_imports_no_model():
    probe = ("import sys; from minimodal.grading.suites import find_suite; find_suite('00_warmup (1)'); "
             "print(' '.join(sorted(m for m in sys.modules if m.startswith('minimodal'))))")
    loaded = set(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                cwd=REPO).stdout.split())
    heavy = {f"minimodal.{name}" for name, level in LEVEL.items() if BLOCKS <= level < ENTRY}
    assert "minimodal.grading.suites.warmup_00" in loaded
    assert not loaded & heavy, f"grading exercise 00 imports {sorted(loaded & heavy)}"


def test_import_minimodal_stays_light_and_offers_the_clip_api():
    probe = ("import sys, minimodal; light = not any(m.startswith('minimodal.') for m in sys.modules); "
             "print(light, callable(minimodal.load), callable(minimodal.tokenize))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["True", "True", "True"]
