"""One module per exercise notebook, named ``<topic>_<NN>``; each sets NOTEBOOK (the notebook's stem)
and CHECKS.

A notebook is matched to its suite by its lesson number, so a renamed copy such as
``00_warmup (1).ipynb`` is still graded, and only that one suite is imported: grading the
warm-up never imports the VQA model.
"""

from __future__ import annotations

import importlib
import pkgutil
import re


def find_suite(notebook_stem: str):
    """The suite for a notebook's file name (without .ipynb), e.g. '00_warmup' or '00_warmup (1)'."""
    suites = {info.name.rsplit("_", 1)[-1]: info.name for info in pkgutil.iter_modules(__path__)}
    number = re.match(r"\s*(\d\d)_", notebook_stem)
    if number is None or number.group(1) not in suites:
        raise KeyError(f"no graded suite for notebook '{notebook_stem}'; a graded notebook's name "
                       f"starts with its exercise number, one of {', '.join(sorted(suites))}")
    return importlib.import_module(f"{__name__}.{suites[number.group(1)]}")
