# qmorch — build, test, testbed. `make help` lists the targets.
SHELL := /bin/bash
# Go from the official tarball when it is not on PATH (the README quick start on a fresh machine)
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := bin
# A release tarball (make dist) carries VERSION and COMMIT files; a git checkout asks git.
VERSION ?= $(shell cat VERSION 2>/dev/null || git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell cat COMMIT 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
FUZZTIME ?= 30s
export TB ?= /var/tmp/qmorch-testbed

.PHONY: help build test unit e2e fuzz demo bench bench-short vet clean deps

help:
	@echo "make demo      bring the testbed up (if needed) and deploy examples/nested.container to node1"
	@echo "make test      everything CI runs: vet, unit + conformance tests, fuzz (short), e2e on the testbed"
	@echo "make unit      unit and conformance tests only (no root needed for most)"
	@echo "make e2e       e2e suites on the nspawn testbed (root)"
	@echo "make bench     benchmarks with a results table"
	@echo "make dist      source tarball with vendored modules: dist/qmorch-VERSION.tar.gz"
	@echo "make rpm       RPM from that tarball (rpmbuild; RPMBUILD_FLAGS=--nodeps without golang rpm)"
	@echo "make man       regenerate docs/man/*.1 from the command tree"
	@echo "make packaging the packaging checks CI runs (rpm, fleet deploy --root)"
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
	bash tests/unit/run.sh
	bash tests/conformance/run.sh

fuzz:
	@for t in $$(bash tests/fuzz-targets.sh); do \
	  pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
	  $(GO) test -run='^$$' -fuzz="^$$fn\$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
	done

e2e: deps build
	bash tests/e2e/run.sh

test: deps vet unit fuzz bench-short e2e packaging

demo: deps build
	bash tests/demo.sh

bench: build
	bash tests/bench/run.sh

# CI: the same table with N <= 32 (under a minute).
bench-short:
	BENCH_SHORT=1 bash tests/bench/run.sh

clean:
	rm -rf $(BIN)

# --- packaging (issue 6): dist tarball, RPM, man pages -------------------------------------------
# RPM-safe version: no leading v, '-' -> '.', 0.0.0+git<hash> when git knows no tag.
DIST_VERSION ?= $(shell echo '$(VERSION)' | sed -E 's/^v//; /^[0-9]+[.][0-9]/!s/^/0.0.0+git/; s/-/./g')
DISTDIR ?= dist
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
RPMTOP ?= $(CURDIR)/dist/rpmbuild
RPMBUILD_FLAGS ?=

.PHONY: dist rpm man packaging fmf-check

# Source (tracked and untracked-but-not-ignored files), VERSION/COMMIT, vendor/ (go mod vendor in
# the staging dir, never in the repo) and the spec with its version set: rpmbuild needs no network.
dist:
	@set -euo pipefail; stage=$(DISTDIR)/qmorch-$(DIST_VERSION); rm -rf "$$stage" "$$stage.tar.gz"; mkdir -p "$$stage"; \
	  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	    git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do [ -f "$$f" ] && printf '%s\0' "$$f"; done; \
	  else find . \( -path ./.git -o -path ./dist -o -path ./bin -o -path ./vendor -o -path './$(DISTDIR)' \) -prune -o -type f -print0; fi \
	  | grep -zv '^\(\./\)\?\(dist\|bin\|vendor\)/' | tar --null -T - -cf - | tar -xf - -C "$$stage"; \
	  echo '$(VERSION)' > "$$stage/VERSION"; echo '$(COMMIT)' > "$$stage/COMMIT"; \
	  sed -i -E 's/^(%global qmorch_default_version )0\.0\.0$$/\1$(DIST_VERSION)/' "$$stage/deploy/qmorch.spec"; \
	  (cd "$$stage" && GOFLAGS=-mod=mod $(GO) mod vendor); \
	  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@$(SOURCE_DATE_EPOCH) -C $(DISTDIR) -cf - qmorch-$(DIST_VERSION) \
	    | gzip -9n > "$$stage.tar.gz"; \
	  rm -rf "$$stage"; echo "$$stage.tar.gz"

rpm: dist
	rpmbuild -bb $(RPMBUILD_FLAGS) --define '_topdir $(RPMTOP)' --define '_sourcedir $(abspath $(DISTDIR))' \
	  --define 'qmorch_version $(DIST_VERSION)' deploy/qmorch.spec

man:
	QMORCH_WRITE_MAN=1 $(GO) test -count=1 -run '^TestManPages$$' ./cmd/qmorch

packaging:
	bash tests/packaging/rpm.sh
	bash tests/deploy/run.sh

fmf-check:
	$(GO) test -count=1 ./tests/plans/

include tests/testbed/testbed.mk
