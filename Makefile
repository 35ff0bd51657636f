# inrgan: `make demo` trains and renders a small model on the CPU; `make test` runs the test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.inrgan-setup
# A CPU build of torch that lies on this machine's disk is preferred to a multi-GB CUDA download;
# elsewhere pip installs the usual torch wheel.
LOCAL_TORCH ?= torch==2.13.0
DEMO_KIMG ?= 4

.PHONY: setup test test-matrix demo lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-index --no-deps "$(LOCAL_TORCH)" 2>/dev/null \
		&& echo "setup: using the local $(LOCAL_TORCH) wheel" \
		|| echo "setup: no local $(LOCAL_TORCH) wheel; pip installs torch from the index"
	$(BIN)/python -m pip install --quiet -e ".[dev,metrics,plot,serve,onnx]"
	@if command -v npm >/dev/null; then \
		$(BIN)/python -m inrgan.export fetch || echo "setup: could not fetch onnxruntime-web; the web export's tests will be skipped"; \
	else echo "setup: no npm, so no onnxruntime-web for inrgan export --format web; its tests will be skipped"; fi
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "setup: installing Debian's dataset-fashion-mnist"; \
		apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
		|| (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1) \
		|| echo "setup: could not install dataset-fashion-mnist; see README (Data)"; \
	fi
	@if ! command -v chromedriver >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "setup: installing Debian's chromium and chromium-driver for the browser tests"; \
		apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
		|| (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1) \
		|| echo "setup: could not install chromium; the browser tests will be skipped"; \
	fi
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest

# The suite again with the rounding another machine would give: AVX2 kernels in MKL and oneDNN (an older or
# other CPU), one OpenMP thread, torch's kernels instead of the C ones; then with nothing but the venv on
# PATH, so no C compiler (the C kernels cannot be built: the fallback path, from an empty cache).
test-matrix: setup
	MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 OMP_NUM_THREADS=1 INRGAN_NATIVE=0 $(BIN)/python -m pytest
	cache=$$(mktemp -d) && PATH="$(CURDIR)/$(BIN)" CC=cc INRGAN_CACHE_DIR=$$cache $(CURDIR)/$(BIN)/python -m pytest; \
		status=$$?; rm -rf $$cache; exit $$status

demo: setup
	@echo "demo 1/2: a short live training run of the default preset on Fashion-MNIST (a sample grid per tick)"
	$(BIN)/inrgan train --data fashion-mnist --out demo/run --kimg $(DEMO_KIMG) --tick 1 --device cpu
	@echo "demo 2/2: the showcase of the shipped model fashion-mnist-32"
	$(BIN)/inrgan showcase --checkpoint fashion-mnist-32 --out demo --run demo/run
	@echo "demo: open demo/index.html (every picture with its caption); the live run is in demo/run/"

lint: setup
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) demo .pytest_cache
