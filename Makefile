# cloudrun_oidc — build, test, demo, bench.
# `make test` and `make demo` work on a fresh machine: `setup` installs what they need.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
WASM_TARGET := wasm32-wasip1
DIST := dist
WASM := $(DIST)/cloudrun_oidc.wasm
PROBE := target/$(WASM_TARGET)/release/probe_filter.wasm
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all setup build probe spec-tools engine-tier test lint unit demo bench bench-tools fuzz soak fault-run up down clean

all: build

## setup: toolchain target and Debian packages the build and tests need
setup:
	rustup target add $(WASM_TARGET)
	@missing=""; \
	pkg-config --exists openssl 2>/dev/null || missing="$$missing libssl-dev pkg-config"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

## build: the filter and its schema, the two files users deploy
build: setup
	$(CARGO) build --release --target $(WASM_TARGET) -p cloudrun-oidc
	mkdir -p $(DIST)
	cp target/$(WASM_TARGET)/release/cloudrun_oidc.wasm $(WASM)
	@if [ -f kong/cloudrun_oidc.meta.json ]; then cp kong/cloudrun_oidc.meta.json $(DIST)/; fi
	@ls -l $(DIST)

## probe: the probe filter that exercises the Kong stand-in's host rules
probe: setup
	$(CARGO) build --release --target $(WASM_TARGET) -p probe-filter

## spec-tools: gateway, mock-idp, mock-google, cloudrun (optimised)
spec-tools: setup
	$(CARGO) build --profile spec -p cloudrun-spec --bins

lint: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy -p cloudrun-oidc -p probe-filter --target $(WASM_TARGET) -- -D warnings

## engine-tier: which engine tier `make test` runs: Kong's engine when WASMX_NGINX names one (nginx
## with Kong's ngx_wasm_module 9136e463 on wasmtime 26, Kong's property namespace; the project ships
## and builds none), else one line saying it is skipped (those tests are then reported as ignored)
engine-tier:
	@if [ -n "$${WASMX_NGINX:-}" ]; then \
	  echo "engine tier: $$WASMX_NGINX ($$("$$WASMX_NGINX" -v 2>&1 | head -1))"; \
	else \
	  echo "engine tier skipped: WASMX_NGINX is not set, so every engine test is reported as ignored (it names an nginx built with Kong's ngx_wasm_module 9136e463 on wasmtime 26, Kong's property namespace; see README)"; \
	fi

## test: everything CI checks; the end-to-end tests on the Kong stand-in, and on Kong's engine when
## WASMX_NGINX names one
test: build probe lint
	@$(MAKE) --no-print-directory engine-tier
	@status=0; $(CARGO) test || status=$$?; \
	$(MAKE) --no-print-directory engine-tier; exit $$status

## demo: the kong/kong.yml topology with the real filter, a few calls shown; on the Kong stand-in,
## or on Kong's engine with ENGINE=wasmx (WASMX_NGINX names it)
ENGINE ?= standin
demo: build spec-tools $(if $(filter wasmx nginx,$(ENGINE)),probe)
	ENGINE=$(ENGINE) target/spec/demo

## bench: filter cost in wasm (in-process), natively and in OpenSSL, HTTP throughput on the stand-in
## and on Kong's engine when present (BENCHMARKS.md); figures in target/bench/summary.json.
## BENCH_ARGS passes options, e.g. BENCH_ARGS="--skip-http" or BENCH_ARGS="--only-engine".
BENCH_ARGS ?=
bench: build probe spec-tools bench-tools
	target/spec/bench $(BENCH_ARGS)

## bench-tools: what the engine part of the bench adds: wrk (Debian's package) and the empty filter
bench-tools: setup
	@command -v wrk >/dev/null || { echo "installing: wrk"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk; }
	$(CARGO) build --release --target $(WASM_TARGET) -p empty-filter

## fuzz: every cargo-fuzz target (fuzz/) for FUZZ_SECONDS each (default 60), seeded from ../shared/vectors;
## prints libFuzzer's final line per target (`#N DONE cov: X ft: Y`: executions, coverage).
## Crashes land in fuzz/artifacts/<target>/ and make this target fail.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= token jwks discovery config claims extractor
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	python3 fuzz/make_seeds.py
	cd fuzz && nice $(CARGO) +nightly fuzz build
	@mkdir -p target/fuzz
	@failed=""; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  if ! (cd fuzz && nice $(CARGO) +nightly fuzz run $$t corpus/$$t seeds/$$t -- \
	      -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1) > target/fuzz/$$t.log 2>&1; then \
	    failed="$$failed $$t"; tail -40 target/fuzz/$$t.log; \
	  fi; \
	  grep -E '^#[0-9]+[[:space:]]+DONE' target/fuzz/$$t.log | tail -1 | sed "s/^/$$t: /" || true; \
	done; \
	echo "== summary (executions, coverage; logs in target/fuzz/)"; \
	for t in $(FUZZ_TARGETS); do \
	  printf '%-10s %s\n' $$t "$$(grep -E '^#[0-9]+[[:space:]]+DONE' target/fuzz/$$t.log | tail -1)"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashes in:$$failed (see fuzz/artifacts/)"; exit 1; fi

## soak: SOAK_REQUESTS (default 100000) mixed good/bad tokens through the Kong stand-in while
## keys rotate and the IdP flaps; every answer checked; writes target/soak/summary.json
SOAK_REQUESTS ?= 100000
soak: build
	SOAK_REQUESTS=$(SOAK_REQUESTS) $(CARGO) test --profile spec -p cloudrun-spec --test soak -- \
	  --ignored soak_full --nocapture
	@echo "summary: target/soak/summary.json"

## fault-run: FAULT_RUN_SECONDS (default 300) of six routes whose IdPs and Google endpoints refuse,
## reset, hang and answer garbage while others work, on FAULT_RUN_ENGINE (default: Kong's engine
## when WASMX_NGINX is set, else the stand-in); no worker may crash, no answer may be wrong; writes
## target/fault-run/summary-<engine>.json
FAULT_RUN_SECONDS ?= 300
FAULT_RUN_ENGINE ?= $(if $(WASMX_NGINX),wasmx,standin)
fault-run: build probe
	FAULT_RUN_SECONDS=$(FAULT_RUN_SECONDS) ENGINE=$(FAULT_RUN_ENGINE) \
	  $(CARGO) test --profile spec -p cloudrun-spec --test fault_run -- --ignored fault_run_long --nocapture

## up / down: real Kong 3.9 + the mocks in Docker (docker-compose.yml)
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
up:
	$(COMPOSE) up --build -d
	@echo "Kong proxy: http://localhost:8000 (admin :8001); see README.md \"Try it with real Kong\""

down:
	$(COMPOSE) down

clean:
	rm -rf $(DIST) target
