#!/bin/bash
# Deploy suite for the example fleet (examples/fleet): qmorch deploys the fleet's nested Quadlet.
#   without QMORCH_CONFORMANCE_BUS (CI): renders the fleet's host trees with
#     tests/plans/fleet-setup.sh --root, checks them, runs the node unit's command
#     (qmorch provision qm-agent) on each node tree, and deploys with `qmorch deploy --root` into
#     node1's tree (installed, then unchanged on the second run).
#   QMORCH_CONFORMANCE_BUS=ADDRESS QMORCH_CONFORMANCE_NODE=NAME: deploys to that node's QM through
#     that BlueChi controller (deployed or unchanged, active), then again (unchanged), plus a dry run.
#   QMORCH=PATH  the qmorch binary to test (default: built from this tree)
# Used by `make packaging`, CI and the tmt local and multihost plans.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
quadlet=examples/fleet/quadlets/hello.container
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "deploy: FAIL: $*" >&2; exit 1; }
if [ -z "${QMORCH:-}" ]; then
  go build -trimpath -o "$tmp/qmorch" ./cmd/qmorch
  QMORCH=$tmp/qmorch
fi
# expect OUT KEY VALUE...: the pretty-printed JSON has a line "KEY": VALUE for one of the values.
expect() {
  local out=$1 key=$2; shift 2
  for v in "$@"; do grep -qE "^ *\"$key\": $v,?\$" <<<"$out" && return 0; done
  fail "expected \"$key\" to be one of: $* in:"$'\n'"$out"
}

if [ -z "${QMORCH_CONFORMANCE_BUS:-}" ]; then
  echo "deploy: local (--root) mode, $QMORCH"
  tests/plans/fleet-setup.sh --root "$tmp/controller" controller >/dev/null
  for n in node1 node2; do tests/plans/fleet-setup.sh --root "$tmp/$n" node "$n" 192.0.2.10 >/dev/null; done
  grep -q '^ *qm.node2$' "$tmp/controller/etc/bluechi/controller.conf.d/50-fleet.conf" || fail "controller drop-in lacks qm.node2"
  for n in node1 node2; do
    grep -qx "NodeName=$n" "$tmp/$n/etc/bluechi/agent.conf" || fail "$n: NodeName"
    grep -qx "ControllerHost=192.0.2.10" "$tmp/$n/etc/bluechi/agent.conf" || fail "$n: ControllerHost"
  done
  # The node unit's command (deploy/units), on each node's tree: QM's agent becomes qm.NODE.
  exec_start=$(sed -n 's/^ExecStart=//p' deploy/units/qmorch-provision-qm-agent.service)
  [ "${exec_start% --root /}" != "$exec_start" ] || fail "unexpected ExecStart: $exec_start"
  read -ra argv <<<"${exec_start% --root /}"
  for n in node1 node2; do
    mkdir -p "$tmp/$n/usr/share/bluechi-agent/config"  # what the bluechi-agent package ships
    echo '[bluechi-agent]' > "$tmp/$n/usr/share/bluechi-agent/config/agent.conf"
    "$QMORCH" "${argv[@]:1}" --root "$tmp/$n" >/dev/null 2>&1 || fail "$n: ${argv[*]:1} --root exited $?"
    grep -qx "NodeName=qm.$n" "$tmp/$n/etc/qm/bluechi/agent.conf.d/99-qmorch.conf" || fail "$n: QM agent not provisioned"
  done
  out=$("$QMORCH" deploy --root "$tmp/node1" "$quadlet" -o json) || fail "deploy --root exited $?: $out"
  expect "$out" ok true; expect "$out" action '"installed"'; expect "$out" unit '"hello.service"'
  cmp -s "$quadlet" "$tmp/node1/etc/qm/containers/systemd/hello.container" || fail "file not in node1's QM tree"
  out=$("$QMORCH" deploy --root "$tmp/node1" "$quadlet" -o json) || fail "second deploy --root exited $?: $out"
  expect "$out" action '"unchanged"'
  echo "deploy: PASS (fleet rendered; node unit provisioned qm.node1, qm.node2; --root deploy installed, then unchanged)"
  exit 0
fi

node=${QMORCH_CONFORMANCE_NODE:?set QMORCH_CONFORMANCE_NODE to a node with a QM partition}
echo "deploy: to $node through $QMORCH_CONFORMANCE_BUS, $QMORCH"
q=("$QMORCH" --bus-address "$QMORCH_CONFORMANCE_BUS")
out=$("${q[@]}" deploy --dry-run "$node" "$quadlet" -o json) || fail "dry run exited $?: $out"
expect "$out" action '"planned"'
out=$("${q[@]}" deploy --timeout "${DEPLOY_TIMEOUT:-5m}" "$node" "$quadlet" -o json) || fail "deploy exited $?: $out"
expect "$out" ok true; expect "$out" action '"deployed"' '"unchanged"'; expect "$out" activeState '"active"'
expect "$out" qmNode "\"qm.$node\""
out=$("${q[@]}" deploy --timeout "${DEPLOY_TIMEOUT:-5m}" "$node" "$quadlet" -o json) || fail "second deploy exited $?: $out"
expect "$out" action '"unchanged"'
echo "deploy: PASS ($node: deployed and active, then unchanged)"
