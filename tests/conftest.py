"""Shared fixtures: small notebooks written on the fly for the grader tests, and the parity tests' device."""

from pathlib import Path

import nbformat
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def write_notebook(path: Path, code_cells: list[str]) -> Path:
    """A notebook made of these code cells, as a learner would hand it in."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(code) for code in code_cells]
    nbformat.write(nb, path)
    return path


@pytest.fixture
def learner_notebook(tmp_path):
    """Factory: learner_notebook('00_warmup', code, ...) -> path of a notebook with that stem."""
    def make(stem: str, *code_cells: str) -> Path:
        folder = tmp_path / stem
        folder.mkdir(exist_ok=True)
        return write_notebook(folder / f"{stem}.ipynb", list(code_cells))
    return make


@pytest.fixture
def device() -> torch.device:
    """The device parity tests run on; tests/test_cuda.py overrides it."""
    return torch.device("cpu")
