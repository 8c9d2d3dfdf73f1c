"""The autograder: exercise notebooks generated from solutions, graded in a separate process."""

from minimodal.grading.checks import Check, expect_close, expect_equal, expect_tensor
from minimodal.grading.exercises import generate_exercises
from minimodal.grading.grader import Report, Result, grade, self_check

__all__ = ["Check", "expect_close", "expect_equal", "expect_tensor", "generate_exercises",
           "Report", "Result", "grade", "self_check"]
