#!/bin/bash
# controller.sh start|stop|address -- the BlueChi test double for the local testbed (demo and
# manual use). It runs on a private dbus-daemon under $TB/controller and reaches every testbed
# node, and each QM twin, over their system bus sockets. Only the PID recorded here is signalled.
set -euo pipefail
cd "$(dirname "$0")/.."
TB=${TB:-/var/tmp/qmorch-testbed}
dir=$TB/controller
pidf=$dir/controller.pid
bin=${CONTROLLER_BIN:-bin/bluechi-testcontroller}
# the recorded PID counts only while it is still our binary (PIDs get reused)
running() {
  local p
  [ -s "$pidf" ] || return 1
  p=$(cat "$pidf")
  kill -0 "$p" 2>/dev/null && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$(basename "$bin" | cut -c1-15)" ]
}
case ${1:-} in
start)
  if running; then cat "$dir/address"; exit 0; fi
  [ -s "$TB/testbed.env" ] || { echo "controller.sh: testbed not up ($TB/testbed.env missing)" >&2; exit 1; }
  # shellcheck disable=SC1091
  . "$TB/testbed.env"
  args=(--bus-dir "$dir")
  for n in $TB_NODES; do
    bus=NODE_${n}_BUS addr=NODE_${n}_ADDR
    args+=(--node "$n=${!bus}")
    [ -n "${!addr:-}" ] && args+=(--peer-ip "$n=::ffff:${!addr}")
  done
  for n in $TB_QM_NODES; do
    bus=QM_${n}_BUS addr=NODE_${n}_ADDR
    args+=(--node "qm.$n=${!bus}")
    [ -n "${!addr:-}" ] && args+=(--peer-ip "qm.$n=::ffff:${!addr}")
  done
  mkdir -p "$dir"; rm -f "$dir/address"
  # close inherited fds (e.g. a caller's flock on the testbed lock) in the long-lived daemon
  ( for f in /proc/$BASHPID/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] 2>/dev/null && eval "exec $n>&-"; done
    exec setsid "$bin" "${args[@]}" ) </dev/null >"$dir/stdout.log" 2>"$dir/controller.log" &
  echo $! > "$pidf"
  for _ in $(seq 1 100); do
    [ -s "$dir/address" ] && { cat "$dir/address"; exit 0; }
    # (liveness only: right after the fork the PID may still be the exec'ing subshell)
    kill -0 "$(cat "$pidf")" 2>/dev/null || { echo "controller.sh: test controller exited, see $dir/controller.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "controller.sh: no bus address after 10s, see $dir/controller.log" >&2; exit 1 ;;
stop)
  if running; then
    p=$(cat "$pidf"); kill -TERM "$p"
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p"
  fi
  rm -f "$pidf" ;;
address) running && cat "$dir/address" ;;
*) echo "usage: $0 start|stop|address" >&2; exit 2 ;;
esac
