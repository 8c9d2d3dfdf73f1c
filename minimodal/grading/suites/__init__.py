"""One module per exercise notebook; each sets NOTEBOOK (the notebook's stem) and CHECKS."""

from __future__ import annotations

import importlib
import pkgutil


def find_suite(notebook_stem: str):
    """The suite module whose NOTEBOOK is this stem, e.g. '00_warmup'."""
    known = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        known.append(module.NOTEBOOK)
        if module.NOTEBOOK == notebook_stem:
            return module
    raise KeyError(f"no graded suite for notebook '{notebook_stem}'; graded notebooks are: "
                   f"{', '.join(sorted(known))}")
