# Two commands for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

# torch first, pinned to the CPU wheel that lies on disk: the package's own range is then
# already satisfied and pip never downloads a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/seedmm demo --out demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/world.py
	$(BIN)/python bench/tokenizer.py
	$(BIN)/python bench/detokenizer.py
	$(BIN)/python bench/llm.py
	$(BIN)/python bench/scene_probe.py
	$(BIN)/python bench/code_locality.py

clean:
	rm -rf $(VENV) demo build src/*.egg-info
