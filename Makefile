# Two commands do all the set-up: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.atelier-installed
export HF_HUB_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED ?= False
export OMP_NUM_THREADS ?= 2

.PHONY: venv demo test test-slow bench serve clean

venv: $(STAMP)

# torch and torchvision go first, pinned: PyPI torchvision does not import beside other torch builds.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/atelier demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

serve: $(STAMP)
	$(VENV)/bin/atelier serve

clean:
	rm -rf outputs build *.egg-info
