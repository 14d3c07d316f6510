# Two commands do all set-up on a fresh clone: `make test` and `make demo`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# CPU build from the local disk; an unpinned torch may pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
STAMP  := $(VENV)/.installed
DEMO_OUT ?= demo_out

.PHONY: test demo install bench clean lock test-kernels

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_PIN)"
	$(PIP) install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh $(DEMO_OUT)

# the suite under the default, Prescott and Haswell BLAS kernels (scripts/test_blas_kernels.sh)
test-kernels: $(STAMP)
	PY=$(PY) bash scripts/test_blas_kernels.sh

# newest allowed versions -> suite -> constraints.txt (only if it passes)
lock:
	TORCH_PIN="$(TORCH_PIN)" bash scripts/refresh_constraints.sh $(PYTHON)

bench: $(STAMP)
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
