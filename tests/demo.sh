#!/bin/bash
# make demo: brings the testbed up if needed, starts the BlueChi test controller on it, deploys
# examples/nested.container to node1 with qmorch and shows the result. Leaves everything running
# so you can try more commands; `make testbed-down` removes it all (test controller included).
# On a shared machine run it as `flock /run/lock/qmorch-testbed.lock make demo` (it takes no lock itself).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s.%N)
bash tests/testbed/testbed.sh up >/dev/null
addr=$(bash tests/controller.sh start)
export DBUS_SYSTEM_BUS_ADDRESS=$addr

# Wait (bounded) until the controller reports node1 and its QM twin online: ListNodes on the
# controller bus, a(soss) = (name, path, status, peer ip).
online() {
  local out n
  out=$(busctl --address="$addr" --timeout=2 call org.eclipse.bluechi /org/eclipse/bluechi \
        org.eclipse.bluechi.Controller ListNodes 2>/dev/null) || return 1
  for n in node1 qm.node1; do
    grep -q "\"$n\" \"[^\"]*\" \"online\"" <<<"$out" || return 1
  done
}
for _ in $(seq 1 600); do online && break; sleep 0.1; done
online || { echo "demo: node1/qm.node1 not online after 60s; see ${TB:-/var/tmp/qmorch-testbed}/controller/controller.log" >&2; exit 1; }

echo "+ qmorch deploy node1 examples/nested.container"
rc=0
bin/qmorch deploy node1 examples/nested.container || rc=$?
echo
echo "+ qmorch status node1"
bin/qmorch status node1 || true
echo
echo "+ qmorch status node1 nested"
bin/qmorch status node1 nested || true
echo
awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "demo took %.1fs\n", b-a}'
cat <<TXT

The testbed and the test controller keep running. Try:
  export DBUS_SYSTEM_BUS_ADDRESS=$addr
  bin/qmorch deploy node1,node2 examples/nested.container -o json
  bin/qmorch status node1,node2 nested
  bash tests/testbed/testbed.sh qm-exec node1 podman ps
Remove everything with: make testbed-down
TXT
exit $rc
