# The two commands a new user needs: `make demo` and `make test` (both create .venv when missing).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench-venv clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[dev,ray,s3]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/curate demo -o demo-out

test: $(VENV)/.dev-installed
	$(BIN)/pytest -q

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check curate tests scripts

# Benchmark-only peers (datatrove, ...) live in their own venv: they replace modules curate depends on.
bench-venv:
	test -d .venv-bench || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install -q --upgrade pip
	.venv-bench/bin/python -m pip install -q "datatrove[processing]" "spacy>=3.8,<3.9" datasketch psutil pyarrow

clean:
	rm -rf demo-out .pytest_cache
