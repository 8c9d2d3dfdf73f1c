# A thin wrapper: every target is also reachable as `python -m minimodal ...` or pytest.
# The first target that needs it creates .venv and installs the course into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: tour test lab exercises grade clean

tour: $(VENV)/.installed
	$(PY) -m minimodal tour

test: $(VENV)/.installed
	$(PY) -m pytest

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab lessons/

exercises: $(VENV)/.installed
	$(PY) -m minimodal exercises

grade: $(VENV)/.installed
	$(PY) -m minimodal grade $(NOTEBOOK)

# torch first, pinned, so nothing below can pull a CUDA build; open_clip_torch without
# its dependencies, because its torchvision would break transformers' image processor.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev,ref]"
	$(PY) -m pip install --quiet --no-deps open_clip_torch==3.3.0
	touch $@

clean:
	rm -rf build $(VENV)
