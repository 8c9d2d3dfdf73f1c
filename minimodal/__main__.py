"""python -m minimodal tour | grade NOTEBOOK | exercises"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path



def course_root() -> Path:
    """The course checkout: the working directory, else the one this package sits in."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (candidate / "lessons").is_dir():
            return candidate
    raise SystemExit("run this from the minimodal checkout (the folder with lessons/ and solutions/)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minimodal", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    tour = commands.add_parser("tour", help="run every lesson headless and report its validations")
    tour.add_argument("lessons", nargs="*", help="only lessons whose names start with these, e.g. 00 03")
    grade = commands.add_parser("grade", help="grade an exercise notebook")
    grade.add_argument("notebook", type=Path)
    grade.add_argument("--json", action="store_true", help="print the report as JSON")
    grade.add_argument("--seed", type=int, default=0, help="seed for the checks' random inputs")
    commands.add_parser("exercises", help="generate exercises/ from solutions/")
    args = parser.parse_args(argv)

    if args.command == "tour":
        from minimodal.tour import tour as run_tour
        return run_tour(course_root(), args.lessons)
    if args.command == "exercises":
        from minimodal.grading.exercises import generate_exercises
        root = course_root()
        for path in generate_exercises(root):
            print(f"wrote {path.relative_to(root)}")
        return 0
    from minimodal.grading import grade as run_grade
    try:
        report = run_grade(args.notebook, seed=args.seed)
    except (FileNotFoundError, KeyError) as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 2
    print(report.to_json() if args.json else report.table())
    return 0 if report.score == report.total else 1


if __name__ == "__main__":
    sys.exit(main())
