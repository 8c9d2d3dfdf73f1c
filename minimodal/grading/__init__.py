"""The autograder: exercise notebooks generated from solutions (``minimodal.grading.exercises``),
graded in a separate process.

The exercises module is not imported here: it needs nbformat, whose import takes seconds,
and every learner's process the grader starts imports this package.
"""

from minimodal.grading.checks import Check, expect_close, expect_equal, expect_tensor
from minimodal.grading.grader import Report, Result, grade, self_check

__all__ = ["Check", "expect_close", "expect_equal", "expect_tensor", "Report", "Result", "grade", "self_check"]
