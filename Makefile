# qmorch — build, test, testbed. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
FUZZTIME ?= 30s
export TB ?= /var/tmp/qmorch-testbed

.PHONY: help build test unit e2e fuzz demo bench vet clean deps

help:
	@echo "make demo      bring the testbed up (if needed) and deploy examples/nested.container to node1"
	@echo "make test      everything CI runs: vet, unit + conformance tests, fuzz (short), e2e on the testbed"
	@echo "make unit      unit and conformance tests only (no root needed for most)"
	@echo "make e2e       e2e suites on the nspawn testbed (root)"
	@echo "make bench     benchmarks with a results table"
	@echo "make testbed-up / testbed-down / testbed-node-stop NODE=x / testbed-node-start NODE=x"

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/qmorch ./cmd/qmorch
	$(GO) build -trimpath -o $(BIN)/bluechi-testcontroller ./tests/cmd/bluechi-testcontroller

deps:
	bash tests/testbed/deps.sh

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./...

fuzz:
	@for t in $$(bash tests/fuzz-targets.sh); do \
	  pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
	  $(GO) test -run='^$$' -fuzz="^$$fn\$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
	done

e2e: deps build
	bash tests/e2e/run.sh

test: deps vet unit fuzz e2e

demo: deps build
	bash tests/demo.sh

bench: build
	bash tests/bench/run.sh

clean:
	rm -rf $(BIN)

include tests/testbed/testbed.mk
