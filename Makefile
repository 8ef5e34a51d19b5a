# `make demo` and `make test` each install what they need into .venv first (idempotent), JAX at
# AlgoPerf's pins (requirements-algoperf-pins.txt), so the tests run on the scoring stack.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
INPUTS := pyproject.toml requirements-algoperf-pins.txt requirements-curvlinops.txt
STAMP := $(VENV)/.installed-$(shell cat $(INPUTS) | cksum | cut -d' ' -f1)

.PHONY: install demo test bench clean

$(STAMP): $(INPUTS)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[torch,jax,runner,dev]' -r requirements-algoperf-pins.txt
	# curvlinops (comparison only) pulls torchvision and a CUDA torch: install it without dependencies.
	$(BIN)/pip install -q --no-deps -r requirements-curvlinops.txt
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m curvlr.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -ra

bench: $(STAMP)
	@for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) experiments .cache
