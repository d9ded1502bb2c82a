# Tam Kỳ Twin — the two commands a newcomer runs: `make demo` and `make test`.
# Both create .venv with python3.12 if missing, install the package (editable) with what it needs,
# build the C++ core, and install the Debian services the tests use (mosquitto, chromium).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# python3.12 from PATH, else pyenv's, else the system's
PYTHON312 ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do \
	if $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then echo $$p; break; fi; done)
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CORE_SOURCES := $(wildcard core_cpp/*.cpp core_cpp/*.hpp) CMakeLists.txt setup.py
DEMO_SCENARIO ?= scenarios/tamky_molave_2020.yaml

.PHONY: help venv deps core core-only services demo test bench lint typecheck typecheck-reset clean sanitize

help:
	@echo "make demo   - set up, build the core, run the default scenario and say where the results are"
	@echo "make test   - set up, build the core, run the whole test suite"
	@echo "make bench  - run benchmarks/ (one JSON line per case)"
	@echo "make lint   - ruff check (config in pyproject.toml)"
	@echo "make typecheck - mypy twin; fails if the error count rises above tools/mypy_ceiling.txt"
	@echo "make sanitize - build the core with ASan+UBSan (build/asan) and run the boundary tests under it"

$(PY):
	@test -n "$(PYTHON312)" || { echo "python3.12 is required (Mesa >= 3.5 needs it) and was not found"; exit 1; }
	$(PYTHON312) -m venv $(VENV)

venv: $(PY)

# pip packages: the build tools, then the package itself (editable) with its dev extras
$(VENV)/.stamp-deps: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "setuptools>=68" wheel "pybind11>=2.12" "cmake>=3.18" ninja
	$(PY) -m pip install --quiet --no-build-isolation --config-settings editable_mode=compat -e ".[dev]"
	touch $@

deps: $(VENV)/.stamp-deps

# incremental build of twin/_core*.so in place (the same CMake tree the editable install uses)
core: deps core-only

# the build alone, with whatever venv is given (VENV=...): no pip step
core-only:
	cmake -S . -B build/core -G Ninja -DCMAKE_BUILD_TYPE=Release \
		-DPython_EXECUTABLE=$(abspath $(PY)) \
		-Dpybind11_DIR=$$($(PY) -m pybind11 --cmakedir) \
		-DCMAKE_LIBRARY_OUTPUT_DIRECTORY=$(CURDIR)/twin/ >/dev/null
	cmake --build build/core -j2

# Debian packages for real services in the tests: an MQTT broker (and its C clients, the
# publishers of benchmarks/sensors_ingest.py) and a browser
services:
	@if ! command -v mosquitto >/dev/null 2>&1 || ! command -v mosquitto_pub >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then \
		$(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends mosquitto mosquitto-clients chromium fonts-dejavu-core; \
	fi

demo: core
	$(PY) -m twin run $(DEMO_SCENARIO)

test: core services
	$(PY) -m pytest

# ASan + UBSan build of the core into build/asan (the normal build and twin/_core*.so are untouched):
# the Python package is copied to build/asan/pkg with the sanitized .so beside it, and the flood, fv and
# traffic boundary tests and the fuzzers run against it (PYTHONPATH first; tests/ has no __init__.py, so
# pytest does not put the repository root ahead of it; -P keeps the working directory off sys.path). Python itself is not sanitized: libasan and
# libstdc++ are preloaded. UBSan reports are fatal (halt_on_error), leaks are not checked (CPython).
SANITIZE_TESTS ?= tests/flood/test_boundary_validation.py tests/flood/test_flood_api.py \
	tests/flood/test_subgrid.py tests/flood/test_subgrid_lts.py tests/fv/test_fv_kernel.py tests/traffic/test_state_validation.py tests/traffic/test_basic.py \
	tests/fuzz
sanitize:  # no pip step (like core-only): run after `make test` or with VENV=...
	@test -x $(PY) || { echo "make sanitize: $(PY) not found; run make test first (or give VENV=...)"; exit 1; }
	cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
		-DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" \
		-DPython_EXECUTABLE=$(abspath $(PY)) -Dpybind11_DIR=$$($(PY) -m pybind11 --cmakedir) \
		-DTWIN_OUTPUT_DIR=$(CURDIR)/build/asan/pkg/twin >/dev/null
	rm -rf build/asan/pkg && mkdir -p build/asan/pkg && cp -r twin build/asan/pkg/ && rm -f build/asan/pkg/twin/_core*.so
	cmake --build build/asan -j2
	@start=$$(date +%s); \
	PYTHONPATH=$(CURDIR)/build/asan/pkg ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libstdc++.so)" \
	$(PY) -P -c 'import twin._core as c, sys; assert "build/asan/pkg" in c.__file__, c.__file__; print("sanitized core:", c.__file__)' && \
	PYTHONPATH=$(CURDIR)/build/asan/pkg ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libstdc++.so)" \
	$(PY) -P -m pytest -q -p no:cacheprovider $(SANITIZE_TESTS); rc=$$?; \
	echo "make sanitize: tests took $$(( $$(date +%s) - start )) s"; exit $$rc

bench: core
	@for b in benchmarks/*.py; do echo "# $$b" >&2; $(PY) $$b || exit 1; done

lint: deps
	$(PY) -m ruff check .

typecheck: deps
	$(PY) tools/mypy_ceiling.py

# the lead, once after merging parallel branches: store the merged tree's count as the ceiling
typecheck-reset: deps
	$(PY) tools/mypy_ceiling.py --reset

clean:
	rm -rf build twin/_core*.so
