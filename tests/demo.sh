#!/bin/bash
# make demo: brings the testbed up if needed, starts the BlueChi test controller on it, deploys
# examples/nested.container to node1 with qmorch and shows the result. Leaves everything running
# so you can try more commands; `make testbed-down` removes it all.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s.%N)
bash tests/testbed/testbed.sh up >/dev/null
addr=$(bash tests/controller.sh start)
export DBUS_SYSTEM_BUS_ADDRESS=$addr
# Wait (bounded) until the controller reaches node1 and its QM twin.
bin/qmorch status --wait-online node1,qm.node1 --timeout 60s >/dev/null 2>&1 || true
echo "+ qmorch deploy node1 examples/nested.container"
bin/qmorch deploy node1 examples/nested.container
echo
echo "+ qmorch status node1 nested.service"
bin/qmorch status node1 nested.service || true
echo
awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "demo took %.1fs\n", b-a}'
cat <<TXT

The testbed and the test controller keep running. Try:
  export DBUS_SYSTEM_BUS_ADDRESS=$addr
  bin/qmorch deploy node1,node2 examples/nested.container -o json
  bash tests/testbed/testbed.sh qm-exec node1 podman ps
Remove everything with: make testbed-down
TXT
