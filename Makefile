# seqlrp: `make test` (lint + tests), `make demo` (the main job). Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: test test-slow test-gpu lint demo bench bench-gpu clean browser

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PIP) install -q -e '.[dev]'
	# zennit 1.0.0 is a test-only oracle; it declares Python >= 3.11.11, so install it without its
	# metadata check (its own deps are torch/numpy/click, already present); tests skip when absent.
	-$(PIP) install -q --no-deps --ignore-requires-python "zennit==1.0.0"
	# LXT 2.1 is the transformer oracle (test-only); its dependencies would pull transformers < 5: none of them
	-$(PIP) install -q --no-deps "lxt==2.1"
	touch $(STAMP)

# ruff, and deptry: every import in seqlrp/ is a declared runtime dependency (pyproject's [tool.deptry])
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/deptry .

# Debian's chromium for the report's browser test; without root or apt the test skips with a message
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } || \
	  echo "chromium could not be installed: the browser test will be skipped"

test: lint browser
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# the rule, CNN, LSTM and reference-parity tests on CUDA (tests/test_cuda.py); each skips without a GPU
test-gpu: $(STAMP)
	$(PY) -m pytest -q -m cuda -rs

demo: $(STAMP)
	$(VENV)/bin/seqlrp demo --out out/demo

bench: $(STAMP)
	GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736 \
	  $(PY) benchmarks/lstm.py --batch 64,512,1024 --order both
	GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736 \
	  $(PY) benchmarks/cnn.py
	GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736 \
	  $(PY) benchmarks/cnn.py --models efficientnet_b0,mobilenet_v3_large,regnet_y_400mf,convnext_tiny
	GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736 \
	  $(PY) benchmarks/breakdown.py
	GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736 \
	  $(PY) benchmarks/fixed_cost.py
	GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736 \
	  $(PY) benchmarks/recurrent.py --batch 64 --tokens 64 --threads 2
	GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736 \
	  $(PY) benchmarks/transformer.py --batch 32 --tokens 64 --threads 2
	GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736 \
	  $(PY) benchmarks/photos.py

bench-gpu: $(STAMP)
	$(PY) benchmarks/lstm.py --device cuda --batch 1024 --order both
	$(PY) benchmarks/cnn.py --device cuda --batch 64

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
