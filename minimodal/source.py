"""Show the package's own code inside a lesson: what a lesson builds is read there, not just called.

One helper, so that no lesson pastes a copy of a function that could drift from the one
the package runs.
"""

from __future__ import annotations

import inspect


def show_source(*objects) -> None:
    """Display each function's or class's source as a Python code block (in a notebook)."""
    from IPython.display import Markdown, display  # only in a notebook

    for obj in objects:
        display(Markdown(f"```python\n{inspect.getsource(obj)}```"))
