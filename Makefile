# payrail — the two commands are `make up` and `make test`; see README.md.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT      := $(abspath .)
VENV      := $(ROOT)/.venv
PY        := $(VENV)/bin/python
TOOLS     := $(ROOT)/.tools
BUF       := $(TOOLS)/npm/node_modules/.bin/buf
GRPCURL   := $(TOOLS)/bin/grpcurl
PROTOC_GEN_GO      := $(TOOLS)/bin/protoc-gen-go
PROTOC_GEN_GO_GRPC := $(TOOLS)/bin/protoc-gen-go-grpc
PROTOC_GEN_ES      := $(TOOLS)/npm/node_modules/.bin/protoc-gen-es
PYTHON_SYS ?= python3

# The development stack (`make up`): default ports, data under .data/.
# A sandbox test card is shared by everyone who follows the README: velocity counts a
# card per user here (production keeps the default, all users).
# PAYRAIL_LOCAL_CONSOLE=1: services.sh runs the web console too (http://127.0.0.1:50080/).
# PAYRAIL_LOCAL_POLYGLOT_SANDBOXES=1: it runs the Go and TypeScript sandbox gateways too
# (POLYGLOT=0 leaves them out).
POLYGLOT ?= 1
DEV_ENV := PYTHON=$(PY) PAYRAIL_DATA_DIR=$(ROOT)/.data PAYRAIL_TOOLS_DIR=$(TOOLS) \
	PAYRAIL_RISK_VELOCITY_CARD_SCOPE=user PAYRAIL_LOCAL_CONSOLE=1 \
	PAYRAIL_LOCAL_POLYGLOT_SANDBOXES=$(POLYGLOT)

# The test stack (`make test`): its own ports and data dir, so it never collides with `make up`.
TEST_PG_PORT    ?= 15432
TEST_REDIS_PORT ?= 16379
TEST_KAFKA_PORT ?= 19092
TEST_KAFKA_CTRL ?= 19093
TEST_DATA_DIR   ?= $(ROOT)/.data-test
TEST_ENV := PYTHON=$(PY) PAYRAIL_DATA_DIR=$(TEST_DATA_DIR) PAYRAIL_TOOLS_DIR=$(TOOLS) \
	PAYRAIL_PG_PORT=$(TEST_PG_PORT) PAYRAIL_REDIS_PORT=$(TEST_REDIS_PORT) \
	PAYRAIL_KAFKA_PORT=$(TEST_KAFKA_PORT) PAYRAIL_KAFKA_CONTROLLER_PORT=$(TEST_KAFKA_CTRL) \
	PAYRAIL_PG_FAST=1 \
	PAYRAIL_PG_DSN=postgresql://postgres@127.0.0.1:$(TEST_PG_PORT)/payrail \
	PAYRAIL_REDIS_URL=redis://127.0.0.1:$(TEST_REDIS_PORT)/0 \
	PAYRAIL_KAFKA_BOOTSTRAP=127.0.0.1:$(TEST_KAFKA_PORT) \
	PAYRAIL_BUF=$(BUF) PAYRAIL_GRPCURL=$(GRPCURL)

PYTEST_ARGS ?=

.PHONY: help up down status test gen lint tools venv logs clean bench bench-ab dlq chaos browser sandboxes

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- installation
$(VENV)/.installed: pyproject.toml
	@echo "[make] creating the Python environment in .venv (first run takes a minute)"
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed ## install the Python dependencies into .venv

$(BUF):
	@echo "[make] installing buf (npm @bufbuild/buf) into .tools/npm"
	@command -v npm >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm)
	@mkdir -p $(TOOLS)/npm
	@cd $(TOOLS)/npm && npm install --silent --no-audit --no-fund --prefix . @bufbuild/buf@1.75.0 >/dev/null
	@$(BUF) --version >/dev/null

$(GRPCURL):
	@echo "[make] installing grpcurl (go install) into .tools/bin"
	@command -v go >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go)
	@mkdir -p $(TOOLS)/bin
	@GOBIN=$(TOOLS)/bin go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3

# The code generators buf.gen.yaml runs for Go and TypeScript (pinned; Python's is
# grpcio-tools from pyproject.toml).
$(PROTOC_GEN_GO):
	@echo "[make] installing protoc-gen-go (go install) into .tools/bin"
	@command -v go >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go)
	@mkdir -p $(TOOLS)/bin
	@GOBIN=$(TOOLS)/bin go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12

$(PROTOC_GEN_GO_GRPC):
	@echo "[make] installing protoc-gen-go-grpc (go install) into .tools/bin"
	@command -v go >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go)
	@mkdir -p $(TOOLS)/bin
	@GOBIN=$(TOOLS)/bin go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0

$(PROTOC_GEN_ES): $(BUF)
	@echo "[make] installing protoc-gen-es (npm @bufbuild/protoc-gen-es) into .tools/npm"
	@cd $(TOOLS)/npm && npm install --silent --no-audit --no-fund --prefix . @bufbuild/protoc-gen-es@2.17.0 >/dev/null

tools: venv $(BUF) $(GRPCURL) $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC) $(PROTOC_GEN_ES) ## install buf, grpcurl and the code generators into .tools

# The console's browser tests drive Debian's Chromium (playwright, a dev dependency, uses
# it through its executable path and downloads no browser of its own).
browser: ## install Chromium (Debian packages chromium, chromium-driver) when missing
	@if ! command -v chromium >/dev/null; then \
	  echo "[make] installing Chromium (apt: chromium chromium-driver) for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

# The gateway SDKs in Go (sdk/go) and TypeScript (sdk/ts) and the sandbox gateway built on
# each: every language's build script installs its own dependencies (go mod download,
# npm ci from the committed lock files) and is quick when nothing changed.
sandboxes: ## build the Go and TypeScript SDKs and their sandbox gateways
	@command -v go >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go)
	@command -v npm >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm)
	@sandbox_gateways/go/build
	@sandbox_gateways/ts/build

# ---------------------------------------------------------------- contracts
gen: tools ## lint the protos and regenerate generated/ (Python, Go, TypeScript)
	@$(BUF) format -w
	@$(BUF) lint
	@$(PY) tools/codegen.py
	@$(PY) tools/codegen.py --other-languages

lint: tools ## buf lint + format, ruff, mypy (also run by make test)
	@$(BUF) lint && $(BUF) format -d --exit-code
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy

# ---------------------------------------------------------------- the platform
up: tools sandboxes ## start Kafka, PostgreSQL, Redis and every service in the background
	@$(DEV_ENV) deploy/local/stack.sh up
	@$(DEV_ENV) $(PY) -m payrail_common.migrate
	@$(DEV_ENV) $(PY) -m consumer_svc.insights.catalog seed
	@$(PY) -m payrail_common.keys --dir .data/keys --jwt dev-1 --secret vault-dev-1 --secret vault-fingerprint \
	    --secret internal-token --secret edge-assertion --secret console-cookie
	@$(PY) -m sandbox_gateways.keys --dir .data/keys sandbox-json sandbox-soap sandbox-go sandbox-ts
	@# EUR and GBP route to the SOAP sandbox (higher priority, narrower), CAD to the Go
	@# sandbox (protobuf results), AUD to the TypeScript one (JSON), the rest to JSON.
	@$(DEV_ENV) $(PY) -m payment_svc.gateways add sandbox-json --format json --priority 10 \
	    --public-key-file .data/keys/sandbox-json.x25519.pub --secret-file .data/keys/sandbox-json.secret
	@$(DEV_ENV) $(PY) -m payment_svc.gateways add sandbox-soap --format soap --priority 20 \
	    --currencies EUR,GBP \
	    --public-key-file .data/keys/sandbox-soap.x25519.pub --secret-file .data/keys/sandbox-soap.secret
	@$(DEV_ENV) $(PY) -m payment_svc.gateways add sandbox-go --format protobuf --priority 30 \
	    --currencies CAD \
	    --public-key-file .data/keys/sandbox-go.x25519.pub --secret-file .data/keys/sandbox-go.secret
	@$(DEV_ENV) $(PY) -m payment_svc.gateways add sandbox-ts --format json --priority 30 \
	    --currencies AUD \
	    --public-key-file .data/keys/sandbox-ts.x25519.pub --secret-file .data/keys/sandbox-ts.secret
	@$(DEV_ENV) deploy/local/services.sh up
	@echo
	@echo "payrail is up. Web console: http://127.0.0.1:50080/"
	@echo "Public gRPC endpoint: 127.0.0.1:50051 (internal: payment_svc :50052, consumer_svc :50053, insights :50054)"
	@echo "  $(GRPCURL) -plaintext localhost:50051 list"
	@echo "  $(GRPCURL) -plaintext localhost:50051 grpc.health.v1.Health/Check"
	@echo "Logs: .data/logs/   Status: make status   Stop: make down"

down: ## stop every process `make up` started
	@$(DEV_ENV) deploy/local/services.sh down
	@$(DEV_ENV) deploy/local/stack.sh down

status: ## show what is running
	@$(DEV_ENV) deploy/local/stack.sh status
	@$(DEV_ENV) deploy/local/services.sh status

logs: ## follow the service logs of `make up`
	@tail -n 50 -F .data/logs/*.log

# ARGS go to `python -m consumer_svc.dlq` (e.g. ARGS="redrive payments.events.dlq:0:7").
ARGS ?= list
dlq: venv ## list or re-drive the dead letters of `make up` (ARGS="list" by default)
	@$(DEV_ENV) $(PY) -m consumer_svc.dlq $(ARGS)

# ---------------------------------------------------------------- tests
# Starts its own stack (ports 15432/16379/19092, data in .data-test), runs every test,
# then stops that stack again (KEEP_STACK=1 leaves it running for faster re-runs).
test: tools browser sandboxes ## run every test against a private stack (never the one from make up)
	@$(TEST_ENV) deploy/local/stack.sh up
	@$(TEST_ENV) $(PY) -m payrail_common.migrate
	@status=0; $(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	 if [ "$${KEEP_STACK:-0}" != 1 ]; then $(TEST_ENV) deploy/local/stack.sh down; fi; \
	 exit $$status

# ---------------------------------------------------------------- benchmark
# `make bench` runs the benchmark (docs/performance.md) against the `make up` platform.
# It restarts the services with the benchmark's environment first: risk limits too high
# to refuse a burst of payments (every benchmark user pays with the same test card) and
# the worker counts below; BENCH_RESTART=0 keeps the running services as they are.
# BENCH_ARGS go to `python -m bench run` (see `python -m bench run --help`); BENCH_DOCS=1
# also rewrites the figures in docs/performance.md from this run. The full run includes
# the settled-throughput confirmation of 5 minutes (--settled-duration-s) and restarts
# the services twice for the CreatePayment-alone phase (admission control off while the
# pipeline is stopped; --alone-admission keep, or --no-create-alone, to avoid that).
# `make bench-ab BENCH_AB_BASE=d99f874` measures CPU per settled payment of that commit
# and of HEAD back to back (`python -m bench ab --help`; BENCH_AB_ARGS for more flags);
# it stops the make-up stack meanwhile and starts it again afterwards.
BENCH_ARGS     ?=
BENCH_RESTART  ?= 1
BENCH_DOCS     ?= 0
BENCH_AB_BASE  ?= d99f874
BENCH_AB_ARGS  ?=
BENCH_GATEWAY_WORKERS ?= 1
BENCH_PAYMENT_WORKERS ?= 1
# Keep in step with bench/ab.py's SERVICE_ENV.
BENCH_ENV := PAYRAIL_RISK_VELOCITY_MAX_PER_CARD=100000000 PAYRAIL_RISK_VELOCITY_MAX_PER_USER=100000000 \
	PAYRAIL_RISK_AMOUNT_FACTOR=100000000 PAYRAIL_REGISTER_MAX_PER_PEER=100000 \
	PAYRAIL_GATEWAY_WORKERS=$(BENCH_GATEWAY_WORKERS) PAYRAIL_PAYMENT_WORKERS=$(BENCH_PAYMENT_WORKERS)

bench: tools ## benchmark the make-up platform (restarts its services with bench settings)
	@if [ "$(BENCH_RESTART)" = 1 ]; then \
	  echo "[bench] restarting the services with the benchmark's settings (BENCH_RESTART=0 skips)"; \
	  $(DEV_ENV) deploy/local/services.sh down; \
	fi
	@$(BENCH_ENV) $(MAKE) --no-print-directory up
	@echo "[bench] running: python -m bench run $(BENCH_ARGS)"
	@$(DEV_ENV) $(BENCH_ENV) $(PY) -m bench run $(if $(filter 1,$(BENCH_DOCS)),--docs docs/performance.md) \
	    $(BENCH_ARGS)

bench-ab: tools ## CPU per settled payment of BENCH_AB_BASE and HEAD, back to back
	@$(BENCH_ENV) $(PY) -m bench ab --base $(BENCH_AB_BASE) $(BENCH_AB_ARGS)

# ---------------------------------------------------------------- chaos suite
# `make chaos` (docs/reliability.md): its own stack (3 Kafka brokers, PostgreSQL with
# fsync on, Redis, every service; ports 25xxx/26xxx/29xxx, data in .data-chaos), N
# payments through the public API while a seeded schedule of faults hits it, then every
# invariant checked; the stack is stopped afterwards (CHAOS_ARGS=--keep-stack keeps it).
# CHAOS_ARGS go to `python -m chaos run` (see `python -m chaos run --help`), e.g.
# CHAOS_ARGS="--payments 2000 --faults 10 --seed 42".
CHAOS_ARGS ?=

chaos: tools ## fault-injection suite on a private 3-broker stack (CHAOS_ARGS=...)
	@PYTHON=$(PY) PAYRAIL_TOOLS_DIR=$(TOOLS) $(PY) -m chaos run $(CHAOS_ARGS)

clean: down ## stop everything and delete local data (keeps .venv and .tools)
	@rm -rf .data .data-test .data-chaos .data-chaos-smoke
