# Weir — see README.md. `make run` runs the embedded default pipeline;
# `make test` installs what the tests need and runs them all.
GO      ?= go
BIN     := bin/weir
GOBIN   := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)

.PHONY: all build run test deps examples bench fuzz lint clean

include test/k8s/k8s.mk

all: build

# The toolchain stamps the VCS revision itself (-buildvcs) except in a git
# worktree, where .git is a file: then the Makefile passes it.
VCS_REV := $(shell git rev-parse HEAD 2>/dev/null)
VCS_LDFLAGS := -X github.com/weir-flow/weir/core/version.revision=$(VCS_REV)
# TAGS: e.g. TAGS=weir_nokube,weir_noplot for a smaller binary (README).
TAGS ?=

build:
	$(GO) build -tags '$(TAGS)' -ldflags '$(VCS_LDFLAGS)' -o $(BIN) ./cmd/weir

## run: the main job on the embedded default (IPFIX on :4739 → proxy → JSON lines on stdout)
run: build
	./$(BIN) run

## deps: Debian packages and Go tools the tests need
deps:
	./scripts/install-deps.sh

WASM_EXAMPLES := $(notdir $(wildcard examples/wasm/*))
RPC_EXAMPLES  := $(notdir $(wildcard examples/rpc/*))

## examples: build the example WASM modules and RPC plugin binaries
examples:
	@for x in $(WASM_EXAMPLES); do \
	  echo "wasm examples/wasm/$$x/$$x.wasm"; \
	  GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o examples/wasm/$$x/$$x.wasm ./examples/wasm/$$x || exit 1; \
	done
	@for x in $(RPC_EXAMPLES); do \
	  echo "rpc  examples/rpc/$$x/$$x"; \
	  $(GO) build -o examples/rpc/$$x/$$x ./examples/rpc/$$x || exit 1; \
	done

## test: everything CI runs, the Kubernetes e2e test against a real
## kube-apiserver included (built from the module proxy, cached)
test: deps examples k8s-apiserver lint
	KUBE_VERSION=$(K8S_VERSION) WEIR_CACHE=$(K8S_CACHE) WEIR_K8S_E2E=1 \
	  $(GO) test -race -timeout 25m ./...
	$(MAKE) fuzz FUZZTIME=$(CI_FUZZTIME)

lint:
	$(GO) vet ./...
	staticcheck ./...

## bench: Go benchmarks of the hot path
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./core/... ./plugins/...

## fuzz: a short run of every fuzz target (make test runs each for
## CI_FUZZTIME, about five minutes in all). CI counts executions rather
## than seconds: a -fuzztime deadline can fail a healthy target with a
## bare "context deadline exceeded" (Go's fuzz coordinator, go.dev/issue/75804,
## fixed only in Go 1.27), and on a loaded machine it did.
FUZZTIME ?= 30s
CI_FUZZTIME ?= 20000x
fuzz:
	@for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$dir/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "fuzz $$dir $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$dir || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
