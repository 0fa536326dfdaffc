# The two commands a newcomer needs: `make demo` and `make test`.
# Both bootstrap themselves: a tools venv with a pinned uv, then the locked project venv.
# --compile-bytecode: the environment may forbid writing .pyc files at run time
# (PYTHONDONTWRITEBYTECODE), and every process that loads models (a validation job's sandbox,
# each a new interpreter) would then compile pandas and scikit-learn from source: 5.8 s -> 2.3 s.
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))

.PHONY: demo test lint format typecheck serve bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	touch $@

venv: $(VENV)/.synced

demo: $(VENV)/.synced
	$(VENV)/bin/mlgov demo

test: $(VENV)/.synced lint typecheck
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

format: $(VENV)/.synced
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

typecheck: $(VENV)/.synced
	$(VENV)/bin/mypy src

bench: $(VENV)/.synced
	$(VENV)/bin/python bench/registry_bench.py

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache .mypy_cache
