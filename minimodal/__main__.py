"""python -m minimodal tour | grade NOTEBOOK | exercises | classify IMAGE... | search FOLDER QUERY"""

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


def add_clip_commands(commands) -> None:
    """classify and search: the parsers here, the work in minimodal.cli."""
    model_help = "a model name, Hugging Face id or checkpoint path (default: shapes, the course's CLIP)"
    device_help = "cpu, cuda, cuda:1, ... (default: CUDA when present, or MINIMODAL_DEVICE)"
    classify = commands.add_parser(
        "classify", help="zero-shot classify images with labels written in words",
        description="Print, for each image, the probability of each label, the most likely first.")
    classify.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    classify.add_argument("--labels", nargs="+", required=True, metavar="LABEL",
                          help='the classes, after the images: --labels "a dog" "a cat"')
    classify.add_argument("--template", action="append", dest="templates", metavar="TEMPLATE",
                          help='a caption with {} where the label goes, e.g. "a photo of a {}"; give '
                               "several to average them (prompt ensembling). Default: {}, the bare "
                               "label, which suits the shapes model's captions")
    classify.add_argument("--model", default="shapes", help=model_help)
    classify.add_argument("--device", help=device_help)
    search = commands.add_parser(
        "search", help="find the images in a folder that best match a text",
        description="Rank the images under FOLDER (at any depth) by cosine similarity to QUERY. Their "
                    "embeddings are cached in FOLDER/.minimodal-cache/; only new or changed files "
                    "are embedded again.")
    search.add_argument("folder", metavar="FOLDER", help="its png, jpg, jpeg, bmp, gif and webp files")
    search.add_argument("query", metavar="QUERY", help='e.g. "a red circle"')
    search.add_argument("-k", type=int, default=5, help="how many images to print (default: 5)")
    search.add_argument("--model", default="shapes", help=model_help)
    search.add_argument("--device", help=device_help)


def run_clip_command(args) -> int:
    """0, or 2 with one `error:` line when the command line or its files are wrong."""
    from minimodal import cli
    try:
        if args.command == "classify":
            cli.classify(args.images, args.labels, args.templates or ["{}"], args.model, args.device)
        else:
            cli.search(args.folder, args.query, args.k, args.model, args.device)
    except cli.CommandError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


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
    add_clip_commands(commands)
    args = parser.parse_args(argv)

    if args.command == "tour":
        from minimodal.tour import tour as run_tour
        return run_tour(course_root(), args.lessons)
    if args.command in ("classify", "search"):
        return run_clip_command(args)
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
