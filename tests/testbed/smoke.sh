#!/bin/bash
# smoke.sh [NODE] -- check of the testbed itself (not of qmorch): deploy a nested Quadlet container in
# NODE's QM (default node1) by hand, start it through QM's own systemd bus, check podman sees it, the
# OOM scores (QM init 500, nested 750), a clean stop; then remove it again. Exits non-zero on failure.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TB=${TB:-/var/tmp/qmorch-testbed}
node=${1:-node1}
[ -f "$TB/testbed.env" ] || { echo "smoke: no $TB/testbed.env (testbed not up)" >&2; exit 1; }
# shellcheck disable=SC1091
. "$TB/testbed.env"
eval "qmbus=\${QM_${node}_BUS:-}; nodebus=\${NODE_${node}_BUS:-}; root=\${NODE_${node}_ROOT:-}"
[ -n "$qmbus" ] || { echo "smoke: $node has no QM" >&2; exit 1; }
tb() { TB=$TB "$here/testbed.sh" "$@"; }
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
ok() { echo "smoke: ok: $*"; }
sd() { busctl --address="$qmbus" --timeout=10 "$1" org.freedesktop.systemd1 "${@:2}"; }
mgr() { sd call /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager "$@"; }
state() {   # ActiveState of a unit in QM ("" when not loaded)
  local p; p=$(mgr GetUnit s "$1" 2>/dev/null | sed -n 's/^o "\(.*\)"$/\1/p') || true
  [ -n "$p" ] && sd get-property "$p" org.freedesktop.systemd1.Unit ActiveState | sed -n 's/^s "\(.*\)"$/\1/p' || true
}
wait_state() {   # UNIT WANT TENTHS
  local s i
  for i in $(seq 1 "$3"); do s=$(state "$1"); [ "$s" = "$2" ] && return 0; case $s in failed) break;; esac; sleep 0.1; done
  fail "$1 is '$s', wanted '$2'"
}
dir=$root/etc/qm/containers/systemd          # node's /etc/qm/containers/systemd = QM's /etc/containers/systemd
# its own name (tbsmoke), so it never touches a nested.container that qmorch or a test deployed
cleanup() {
  rm -f "$dir/tbsmoke.container"
  mgr StopUnit ss tbsmoke.service replace >/dev/null 2>&1 || true
  mgr Reload >/dev/null 2>&1 || true
}
trap cleanup EXIT

# 0. QM bus as root with EXTERNAL auth (what godbus Dial+Auth+Hello does)
[ "$(sd get-property /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager SystemState)" = 's "running"' ] \
  || fail "QM systemd not running"
ok "QM bus $qmbus answers (EXTERNAL auth as root)"

# 1. deploy the nested Quadlet
cat > "$dir/tbsmoke.container.tmp" <<'EOF'
[Unit]
Description=testbed smoke: nested container

[Container]
Image=localhost/busybox:latest
Exec=sleep infinity
PodmanArgs=--init

[Service]
SuccessExitStatus=143
EOF
mv "$dir/tbsmoke.container.tmp" "$dir/tbsmoke.container"
mgr Reload >/dev/null
execstart=$(sd get-property "$(mgr GetUnit s tbsmoke.service 2>/dev/null | sed -n 's/^o "\(.*\)"$/\1/p' || echo /org/freedesktop/systemd1/unit/tbsmoke_2eservice)" \
  org.freedesktop.systemd1.Service ExecStart 2>/dev/null || true)
[ -n "$execstart" ] || execstart=$(mgr LoadUnit s tbsmoke.service >/dev/null && sd get-property /org/freedesktop/systemd1/unit/tbsmoke_2eservice org.freedesktop.systemd1.Service ExecStart)
echo "$execstart" | grep -q -- '--cgroups=disabled' || fail "container.d drop-in not applied: $execstart"
ok "Quadlet generated tbsmoke.service with the testbed container.d drop-in (--cgroups=disabled)"

# 2. start it
t0=$(date +%s%N)
mgr StartUnit ss tbsmoke.service replace >/dev/null
wait_state tbsmoke.service active 150
ok "tbsmoke.service active after $(( ($(date +%s%N) - t0) / 1000000 )) ms"

# 3. podman inside QM lists it; OOM scores
tb qm-exec "$node" podman ps --format '{{.Names}} {{.Image}} {{.Status}}' | grep -q '^systemd-tbsmoke localhost/busybox:latest Up' \
  || { tb qm-exec "$node" podman ps -a >&2; fail "podman ps in QM does not list systemd-tbsmoke"; }
ok "podman ps in QM lists systemd-tbsmoke"
cpid=$(tb qm-exec "$node" podman inspect -f '{{.State.Pid}}' systemd-tbsmoke)
adj=$(tb qm-exec "$node" cat "/proc/$cpid/oom_score_adj")
kids=$(tb qm-exec "$node" sh -c "cat /proc/$cpid/task/*/children")
kadj=$(tb qm-exec "$node" cat "/proc/${kids%% *}/oom_score_adj")
kcmd=$(tb qm-exec "$node" cat "/proc/${kids%% *}/comm")
qmadj=$(tb qm-exec "$node" cat /proc/1/oom_score_adj)
echo "smoke: oom_score_adj: QM init $qmadj, nested container init $adj, its child ($kcmd) $kadj"
[ "$qmadj" = 500 ] || fail "QM init oom_score_adj $qmadj, want 500"
[ "$adj" = 750 ] && [ "$kadj" = 750 ] || fail "nested oom_score_adj $adj/$kadj, want 750"
ok "OOM scores: QM 500, nested 750"

# 4. clean stop (SIGTERM -> 143 = success thanks to --init + SuccessExitStatus)
t0=$(date +%s%N)
mgr StopUnit ss tbsmoke.service replace >/dev/null
for i in $(seq 1 150); do s=$(state tbsmoke.service); case $s in inactive|failed|"") break;; esac; sleep 0.1; done
[ "$s" != failed ] || fail "tbsmoke.service failed on stop"
ok "tbsmoke.service stopped cleanly after $(( ($(date +%s%N) - t0) / 1000000 )) ms ($s)"
echo "smoke: PASS"
