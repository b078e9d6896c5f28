# The two commands of the README. Each sets up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test setup clean-venv gpu-prep gpu-smoke

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: 2.13.0 is a CPU build on this disk; an unpinned torch pulls CUDA.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/imgcomp demo

test: $(STAMP)
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)

# The GPU job (docs/training-gpu.md): wheels + packed data in .gpu/ (data/train from `imgcomp data prepare`), and its CPU smoke run.
gpu-prep: $(STAMP)
	PYTHON=$(PY) scripts/gpu_prepare.sh

gpu-smoke:
	scripts/gpu_smoke.sh
