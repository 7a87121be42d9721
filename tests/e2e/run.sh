#!/bin/bash
# Runs the e2e suites on the nspawn testbed: brings it up (reusing the cached rootfs), runs
# `go test -tags e2e ./tests/e2e/`, and always takes the testbed down again unless it was already
# up before (or KEEP_TESTBED=1). Used by `make e2e`, CI and the tmt plans.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
tb=tests/testbed/testbed.sh
TB=${TB:-/var/tmp/qmorch-testbed}
was_up=0
[ -s "$TB/testbed.env" ] && bash $tb status >/dev/null 2>&1 && was_up=1
cleanup() {
  rc=$?
  if [ "$was_up" = 0 ] && [ "${KEEP_TESTBED:-0}" != 1 ]; then
    bash $tb down || rc=1
  fi
  exit $rc
}
trap cleanup EXIT
bash $tb up >/dev/null
t0=$(date +%s)
go test -tags e2e -count=1 -timeout 20m -v ${E2E_RUN:+-run "$E2E_RUN"} ./tests/e2e/
echo "e2e: suite took $(( $(date +%s) - t0 ))s"
