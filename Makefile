# Two entry points: `make demo` and `make test`. Each builds .venv from nothing when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo test lint data venv clean reproduce

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	# fast-reid's declared dependencies do not resolve; what it imports comes with the above
	$(VENV)/bin/pip install -q --no-deps fastreid
	touch $@

venv: $(VENV)/.installed

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package.
data:
	@if [ -f $(FMNIST) ]; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		apt-get update -q && apt-get install -y -q dataset-fashion-mnist; \
	else \
		echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' (the demo falls back to scikit-learn's digits)"; \
	fi

demo: venv data
	$(PY) -m capdist demo

test: venv
	$(PY) -m ruff check capdist tests scripts
	$(PY) -m pytest -q

# re-make the small committed result (docs/benchmarks/reproduce.json) and say whether it drifted
reproduce: venv
	$(PY) -m capdist.benchmarks.reproduce --check

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
