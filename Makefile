# Two commands on a fresh machine: `make demo` and `make test`. Both build the same idempotent environment.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
STAMP  := $(VENV)/.installed-$(TORCH_VERSION)

.PHONY: demo test setup lint bench clean chromium

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel

# torch first and pinned (an unpinned torch pulls a multi-GB CUDA build); torch-scatter / torch-sparse have
# no wheels for this torch and compile against it, hence --no-build-isolation (pip caches the built wheels).
$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q numpy
	$(PIP) install -q --no-build-isolation torch-scatter==2.1.2
	$(PIP) install -q --no-build-isolation torch-sparse==0.6.18
	$(PIP) install -q -e ".[test,deploy]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/run.py --data demo --mode generate

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

# Debian's headless chromium renders the analysis report in tests/analysis/test_analysis_cli.py (which skips without it);
# skipped when chromium is present, or when apt-get (or root) is unavailable.
chromium:
	@if command -v chromium >/dev/null 2>&1; then echo "chromium: already installed"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && apt-get install -y -q chromium || echo "chromium: install failed; the render test will skip"; \
	else echo "chromium: no apt-get or not root; the render test will skip"; fi

bench: $(STAMP)
	$(PY) benchmarks/bench_layers.py
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_sparsity.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
