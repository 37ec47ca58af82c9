# Two commands matter: `make run` and `make test` (README.md).
# Both install missing Debian packages first, then build with CMake.

DEB_PACKAGES := build-essential cmake pkg-config liblmdb-dev libmsgpack-dev libcjson-dev \
                libevent-dev libssl-dev libpcre2-dev zlib1g-dev libzstd-dev libnats-dev \
                lmdb-utils python3 curl
# What only the tests need: Debian's Chromium for analytics.js, promtool (prometheus) for
# /metrics, and Node.js with npm for the
# pinned SDKs in tests/sdk/package.json (only when no node is installed already).
TEST_PACKAGES := chromium prometheus nats-server
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
DATA ?= ./var

PREFIX ?= /usr/local
.PHONY: all deps build test run bench clean asan fuzz install

all: build

deps:
	@./tools/deps.sh $(DEB_PACKAGES)

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPS_WERROR=ON >/dev/null
	cmake --build build -j $(JOBS)

asan: deps
	cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DPS_SANITIZE=ON -DPS_WERROR=ON >/dev/null
	cmake --build build/asan -j $(JOBS)

test: asan
	@./tools/deps.sh $(TEST_PACKAGES)
	@command -v node >/dev/null && command -v npm >/dev/null || ./tools/deps.sh nodejs npm
	cd build/asan && ctest --output-on-failure -j $(JOBS)

# DESTDIR stages the files under another root (packaging, tests).
install: build
	cmake -S . -B build -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	DESTDIR=$(DESTDIR) cmake --install build

run: build
	./tools/run.sh $(DATA)

bench: build
	@./tools/deps.sh wrk nats-server
	python3 tools/bench.py

# libFuzzer with clang in build/fuzz: FUZZ_SECONDS per target (60), FUZZ_TARGETS (all).
fuzz: deps
	./tools/fuzz.sh

clean:
	rm -rf build
