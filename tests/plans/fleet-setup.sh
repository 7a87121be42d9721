#!/bin/bash
# fleet-setup.sh -- set a host up as a member of the example fleet (examples/fleet): a BlueChi
# controller, or a node (host agent NodeName=NAME) whose QM agent qmorch provisions.
#
#   fleet-setup.sh [--root DIR] controller
#   fleet-setup.sh [--root DIR] node NAME CONTROLLER_ADDRESS
#   fleet-setup.sh                         (under tmt: role, name and controller from $TMT_TOPOLOGY_BASH)
#
# With --root DIR only the configuration files are written into the tree at DIR (CI does this in
# tests/deploy/run.sh); without it this host is configured and its BlueChi services (re)started:
# needs root, bluechi-controller or bluechi-agent + qm, and qmorch (the RPM) installed.
# Used by the tmt multihost plan (prepare) and tests/deploy/run.sh.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
fleet=$repo/examples/fleet
root=/
if [ "${1:-}" = --root ]; then root=${2:?--root needs a directory}; shift 2; fi
role=${1:-} name=${2:-} ctrl=${3:-}
if [ -z "$role" ] && [ -n "${TMT_TOPOLOGY_BASH:-}" ] && [ -f "$TMT_TOPOLOGY_BASH" ]; then
  # shellcheck disable=SC1090
  . "$TMT_TOPOLOGY_BASH"
  role=${TMT_GUEST[role]} name=${TMT_GUEST[name]}
  c=${TMT_ROLES[controller]%% *}
  ctrl=${TMT_GUESTS[$c.hostname]}
fi
usage() { sed -n '5,7p' "$0" | sed 's/^# *//' >&2; exit 2; }
live() { [ "$root" = / ]; }

case $role in
controller)
  install -d -m 0755 "$root/etc/bluechi/controller.conf.d"
  install -m 0644 "$fleet"/controller/etc/bluechi/controller.conf.d/*.conf "$root/etc/bluechi/controller.conf.d/"
  if live; then
    systemctl enable bluechi-controller.service
    systemctl restart bluechi-controller.service
  fi ;;
node)
  [ -n "$name" ] && [ -n "$ctrl" ] || usage
  src=$fleet/$name/etc/bluechi/agent.conf
  [ -f "$src" ] || { echo "fleet-setup.sh: no node $name in examples/fleet" >&2; exit 2; }
  install -d -m 0755 "$root/etc/bluechi/agent.conf.d"
  sed "s/^ControllerHost=.*/ControllerHost=$ctrl/" "$src" > "$root/etc/bluechi/agent.conf.tmp"
  chmod 0644 "$root/etc/bluechi/agent.conf.tmp"
  mv "$root/etc/bluechi/agent.conf.tmp" "$root/etc/bluechi/agent.conf"
  # A unit the conformance checks may start and stop (QMORCH_CONFORMANCE_UNIT).
  install -d -m 0755 "$root/etc/systemd/system"
  printf '%s\n' '[Unit]' 'Description=qmorch conformance target (does nothing)' '' '[Service]' \
    'Type=oneshot' 'RemainAfterExit=yes' 'ExecStart=/bin/true' > "$root/etc/systemd/system/qmorch-conformance.service"
  if live; then
    systemctl daemon-reload
    systemctl enable bluechi-agent.service qmorch-provision-qm-agent.service
    systemctl restart bluechi-agent.service
    # Derive QM's agent configuration (qm.NAME), then (re)start QM with it.
    systemctl start qmorch-provision-qm-agent.service
    systemctl restart qm.service
  fi ;;
*) usage ;;
esac
echo "fleet-setup.sh: $role ${name:+$name }configured${ctrl:+ (controller $ctrl)} in $root"
