"""The install story: pins agree everywhere, and CI runs what the README says."""

import re
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import yaml

from conftest import REPO


def pyproject_pins() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return set(project["dependencies"]) | set(extras["dev"]) | set(extras["ref"])


def environment_pins() -> set[str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return {p for p in pip_section if not p.startswith("-e")}


def test_environment_yml_matches_pyproject():
    assert environment_pins() == pyproject_pins(), (
        f"only in environment.yml: {sorted(environment_pins() - pyproject_pins())}; "
        f"only in pyproject.toml: {sorted(pyproject_pins() - environment_pins())}")


def test_torch_is_pinned_exactly():
    assert "torch==2.13.0" in pyproject_pins()


def test_open_clip_pin_agrees_between_makefile_and_environment_yml():
    makefile = re.search(r"open_clip_torch==([\d.]+)", (REPO / "Makefile").read_text()).group(1)
    environment = re.search(r"open_clip_torch==([\d.]+)", (REPO / "environment.yml").read_text()).group(1)
    assert makefile == environment


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(make \w+)$", quickstart, re.M)
    assert commands == ["make tour", "make test"], commands
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), ".ci/run must call `make test`"


def test_readme_course_map_lists_every_lesson():
    readme = (REPO / "README.md").read_text()
    for lesson in sorted((REPO / "lessons").glob("[0-9][0-9]_*.ipynb")):
        assert f"lessons/{lesson.name}" in readme, f"README's course map misses {lesson.name}"
