#!/bin/bash
# Unit tests: `go test -race` over every package except tests/conformance, which has its own script
# (tests/conformance/run.sh; e2e needs its build tag). Used by `make unit`, CI and the tmt local plan.
#   UNIT_RUN=regexp   only tests matching it (go test -run)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
race=-race
# -race needs cgo and a C compiler (not always there on a tmt guest).
if [ "$(go env CGO_ENABLED)" != 1 ] || ! command -v "$(go env CC)" >/dev/null 2>&1; then race=; fi
mapfile -t pkgs < <(go list ./... | grep -v '/tests/conformance$')
go test $race -count=1 ${UNIT_RUN:+-run "$UNIT_RUN"} "${pkgs[@]}"
