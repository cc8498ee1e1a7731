# sfsync — the README's commands. Every target builds .venv itself when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint demo bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	@touch $(STAMP)

# pytest exits 5 when it collects no tests: say so, but do not call it a failure.
test: $(STAMP)
	@$(BIN)/python -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected"; exit 0; fi; exit $$rc

# The main job on the embedded default: emulator + generated biller data; leaves nothing running.
demo: $(STAMP)
	$(BIN)/sfsync demo

# Every benchmark, figures into docs/benchmarks.md. BENCH_SCALE=small for a quick run; 5m adds 5M line items.
bench: $(STAMP)
	$(BIN)/python bench/run.py

lint: $(STAMP)
	$(BIN)/ruff check sfsync tests bench
	$(BIN)/mypy sfsync

clean:
	rm -rf $(VENV) .sfsync build *.egg-info
