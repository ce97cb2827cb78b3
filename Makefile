PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-all demo lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all,dev]"
	@touch $(STAMP)

# pytest exits 5 when it collected no test: that is a failure here too.
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-all: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m ""

demo: install
	$(BIN)/densevision demo

lint: install
	$(BIN)/ruff check densevision tests benchmarks

clean:
	rm -rf $(VENV) runs
