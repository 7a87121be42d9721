#!/bin/bash
# Wire-level conformance checks of the BlueChi D-Bus API (tests/conformance). Runs as root.
#   without QMORCH_CONFORMANCE_BUS: against the BlueChi test double on a private bus (CI, `make unit`)
#   QMORCH_CONFORMANCE_BUS=ADDRESS  a real controller's bus, e.g. unix:path=/run/dbus/system_bus_socket
#   QMORCH_CONFORMANCE_NODE=NAME    an online node of that controller (required with the bus)
#   QMORCH_CONFORMANCE_UNIT=UNIT    optional: a unit there that may be started and stopped
#   CONFORMANCE_RUN=regexp          only checks matching it (go test -run)
# Used by `make unit`, CI, and the tmt local and multihost plans.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
if [ -n "${QMORCH_CONFORMANCE_BUS:-}" ]; then
  : "${QMORCH_CONFORMANCE_NODE:?set QMORCH_CONFORMANCE_NODE to an online node of the controller at $QMORCH_CONFORMANCE_BUS}"
  echo "conformance: against $QMORCH_CONFORMANCE_BUS (node $QMORCH_CONFORMANCE_NODE, unit ${QMORCH_CONFORMANCE_UNIT:-none})"
else
  echo "conformance: against the BlueChi test double"
fi
race=-race
if [ "$(go env CGO_ENABLED)" != 1 ] || ! command -v "$(go env CC)" >/dev/null 2>&1; then race=; fi
go test $race -count=1 ${CONFORMANCE_RUN:+-run "$CONFORMANCE_RUN"} ./tests/conformance/
