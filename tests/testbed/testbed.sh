#!/bin/bash
# testbed.sh -- multi-node testbed for qmorch's e2e tests (real systemd, real podman/Quadlet, QM).
#
#   testbed.sh up                 build/reuse the rootfs, start all nodes + QM, write $TB/testbed.env
#   testbed.sh down               stop everything, remove mounts/netns/cgroups/state (idempotent)
#   testbed.sh node-stop NAME     stop one node (its state is kept), e.g. to test offline handling
#   testbed.sh node-start NAME    start it again (QM comes back too), rewrites testbed.env
#   testbed.sh status             one line per node
#   testbed.sh env                rewrite and print testbed.env
#   testbed.sh exec NAME CMD...   run CMD in the node (nsenter: outside its cgroup/seccomp; quick checks)
#   testbed.sh qm-exec NAME CMD.. run CMD in the node's QM partition (same caveat)
#   testbed.sh wait NAME          wait until the node (and its QM) run
#
# Layout (all under $TB, default /var/tmp/qmorch-testbed, outside the clone):
#   nodes/NAME/{upper,work,merged}  node overlay (lowerdir = cached rootfs, see mkrootfs.sh)
#   nodes/NAME/dbus/                bound on the node's /run/dbus: node system bus socket
#   nodes/NAME/containers/          node's /var/lib/containers (ext4: no overlay on overlayfs)
#   nodes/NAME/qmvar/               node's /var/qm = QM's /var (ext4, QM's podman storage)
#   nodes/NAME/qmdbus/              node's /run/qmorch-testbed/qmdbus = QM's /run/dbus: QM bus socket
#   qm/NAME/{upper,work,rootfs}     QM rootfs overlay, bound on the node's /usr/lib/qm/rootfs
# Host resources (names derived from TB_ID, default "qtb", so two testbeds can coexist):
#   netns  $TB_ID-sw (bridge) and $TB_ID-NAME per node, addresses $TB_SUBNET.(10+i)/24
#   cgroup /sys/fs/cgroup/{systemd,unified}/$TB_ID/NAME
# SAFETY: nothing here sends traffic from the host netns to node addresses; nodes are reached
# through their bus sockets or nsenter. Only processes recorded in pid files are signalled.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TB=${TB:-/var/tmp/qmorch-testbed}
TB_ID=${TB_ID:-qtb}
TB_SUBNET=${TB_SUBNET:-10.231.7}
TB_NODES=${TB_NODES:-control node1 node2}
TB_QM_NODES=${TB_QM_NODES:-node1 node2}
TB_TIMEOUT=${TB_TIMEOUT:-90}          # seconds to wait for a node / QM to run
CG_HIER="systemd unified"
export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1        # pure cgroup2 view in the node (crun/podman)
export SYSTEMD_NSPAWN_API_VFS_WRITABLE=network   # /proc/sys/net writable (netavark sysctls)
export SYSTEMD_LOG_LEVEL=${SYSTEMD_LOG_LEVEL:-warning}

log() { echo "testbed: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

node_idx() { local i=0 n; for n in $TB_NODES; do i=$((i+1)); [ "$n" = "$1" ] && { echo $i; return; }; done; die "unknown node $1 (TB_NODES=$TB_NODES)"; }
is_qm_node() { local n; for n in $TB_QM_NODES; do [ "$n" = "$1" ] && return 0; done; return 1; }
nd() { echo "$TB/nodes/$1"; }
nspawn_pid() { local f; f=$(nd "$1")/nspawn.pid; [ -s "$f" ] && cat "$f" || true; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
# host PID of the node's systemd (nspawn's child)
node_pid() { local p; p=$(nspawn_pid "$1"); alive "$p" || return 1; pgrep -P "$p" | head -1; }
node_bus() { echo "unix:path=$(nd "$1")/dbus/system_bus_socket"; }
qm_bus() { echo "unix:path=$(nd "$1")/qmdbus/system_bus_socket"; }
# SystemState of the systemd behind a bus address (empty when unreachable)
sysstate() {
  busctl --address="$1" --timeout=2 get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 \
    org.freedesktop.systemd1.Manager SystemState 2>/dev/null | sed -n 's/^s "\(.*\)"$/\1/p' || true
}
# ActiveState of UNIT behind a bus address
unit_state() {
  busctl --address="$1" --timeout=2 call org.freedesktop.systemd1 /org/freedesktop/systemd1 \
    org.freedesktop.systemd1.Manager GetUnit s "$2" 2>/dev/null | sed -n 's/^o "\(.*\)"$/\1/p' | {
    read -r path || exit 0
    busctl --address="$1" --timeout=2 get-property org.freedesktop.systemd1 "$path" \
      org.freedesktop.systemd1.Unit ActiveState 2>/dev/null | sed -n 's/^s "\(.*\)"$/\1/p'; } || true
}
# host PID of QM's init: the process in the node's qm.service cgroup that is PID 1 of its own pidns
qm_pid() {
  local cg p ns
  cg=$(find "/sys/fs/cgroup/unified/$TB_ID/$1" -type d -name qm.service 2>/dev/null | head -1)
  [ -n "$cg" ] || return 1
  # QM's systemd moves itself to init.scope below qm.service (QM sees qm.service as its cgroup root)
  for p in $(cat "$cg/init.scope/cgroup.procs" "$cg/cgroup.procs" 2>/dev/null); do
    ns=$(awk '/^NSpid:/{print NF-1, $NF}' "/proc/$p/status" 2>/dev/null) || continue
    [ "$ns" = "3 1" ] && { echo "$p"; return 0; }
  done
  return 1
}

# Long-lived processes (nspawn) must not inherit the caller's file descriptors: under
# `flock /run/lock/qmorch-testbed.lock testbed.sh up` the lock fd would stay open in every node and the lock
# would be held for as long as the testbed runs. Call in the subshell that execs the daemon.
close_fds() {
  local f n
  for f in /proc/$BASHPID/fd/*; do
    n=${f##*/}
    [ "$n" -gt 2 ] 2>/dev/null && eval "exec $n>&-"
  done
  return 0
}

########## rootfs ##########
rootfs() {
  if [ -s "$TB/rootfs.path" ] && [ -f "$(cat "$TB/rootfs.path")/.qmorch-testbed-rootfs" ]; then
    cat "$TB/rootfs.path"; return
  fi
  local r; r=$("$here/mkrootfs.sh"); echo "$r" > "$TB/rootfs.path"; echo "$r"
}

########## network ##########
net_up() {
  local n i=0
  ip netns list | grep -qw "^$TB_ID-sw" || {
    ip netns add "$TB_ID-sw"
    ip -n "$TB_ID-sw" link set lo up
    ip -n "$TB_ID-sw" link add br0 type bridge
    ip -n "$TB_ID-sw" link set br0 up
  }
  for n in $TB_NODES; do
    i=$((i+1))
    ip netns list | grep -qw "^$TB_ID-$n" && continue
    ip netns add "$TB_ID-$n"
    ip -n "$TB_ID-$n" link set lo up
    ip -n "$TB_ID-$n" link add eth0 type veth peer name p$i
    ip -n "$TB_ID-$n" link set p$i netns "$TB_ID-sw"
    ip -n "$TB_ID-sw" link set p$i master br0 up
    ip -n "$TB_ID-$n" addr add "$TB_SUBNET.$((10+i))/24" dev eth0
    ip -n "$TB_ID-$n" link set eth0 up
  done
}
net_down() {
  local n
  for n in $TB_NODES; do [ -e "/run/netns/$TB_ID-$n" ] && ip netns del "$TB_ID-$n"; done
  [ -e "/run/netns/$TB_ID-sw" ] && ip netns del "$TB_ID-sw"
  return 0
}

########## QM partition (prepared on the host before the node boots) ##########
seccomp_no_rt() {
  # upstream QM ships /usr/share/qm/seccomp-no-rt.json: podman's default profile without the
  # realtime scheduling calls. Derived here from the rootfs's default profile.
  local base=$1 out=$TB/seccomp-no-rt.json
  [ -s "$out" ] && return
  if command -v python3 >/dev/null; then
    python3 - "$base/usr/share/containers/seccomp.json" "$out" <<'EOP'
import json, sys
d = json.load(open(sys.argv[1]))
rt = {"sched_setattr", "sched_setparam", "sched_setscheduler"}
for s in d["syscalls"]:
    if s.get("action") == "SCMP_ACT_ALLOW":
        s["names"] = [n for n in s["names"] if n not in rt]
d["syscalls"] = [s for s in d["syscalls"] if s["names"]]
d["syscalls"].append({"names": sorted(rt), "action": "SCMP_ACT_ERRNO", "errnoRet": 1})
json.dump(d, open(sys.argv[2] + ".tmp", "w"), indent=1)
EOP
    mv "$out.tmp" "$out"
  else
    cp "$base/usr/share/containers/seccomp.json" "$out"
  fi
}

qm_prep() {   # NODE BASE: idempotent; node upper gets /etc/qm + qm.container, host gets the QM overlay
  local n=$1 base=$2 d q U Q E
  d=$(nd "$n"); q=$TB/qm/$n; U=$d/upper; Q=$q/upper
  mkdir -p "$q/upper" "$q/work" "$q/rootfs" "$d/qmvar" "$d/qmdbus"
  # --- QM rootfs: overlay on the base tree; testbed-only files go into its upper (never in /etc/qm)
  if ! mountpoint -q "$q/rootfs"; then   # (re)write the upper only while it is not mounted
    mkdir -p "$Q/usr/share/containers/systemd/container.d" "$Q/usr/share/qmorch-testbed" \
             "$Q/usr/lib/systemd/system.conf.d"
    # every nested .container in QM: cgroups cannot be created in a nested nspawn node
    cat > "$Q/usr/share/containers/systemd/container.d/90-testbed.conf" <<'EOC'
# qmorch testbed only (nesting in an nspawn node), applies to every .container in QM:
# Quadlet passes --cgroups=split; a later flag wins. Without it: crun: bpf create: Operation not permitted
[Container]
PodmanArgs=--cgroups=disabled
EOC
    # podman 5.4 reads no /usr/share/containers/containers.conf.d: an override file, set for every
    # unit of QM's systemd (so users' Quadlet files and QM's /etc stay untouched)
    cat > "$Q/usr/share/qmorch-testbed/containers.conf" <<'EOC'
# qmorch testbed only: nspawn's seccomp filter blocks keyctl; /proc/sys is read-only in a node
[containers]
keyring = false
default_sysctls = []
EOC
    cat > "$Q/usr/lib/systemd/system.conf.d/90-qmorch-testbed.conf" <<'EOC'
# qmorch testbed only: see /usr/share/qmorch-testbed/containers.conf
[Manager]
DefaultEnvironment=CONTAINERS_CONF_OVERRIDE=/usr/share/qmorch-testbed/containers.conf
EOC
  fi
  mountpoint -q "$q/rootfs" || mount -t overlay overlay \
     -o "lowerdir=$base,upperdir=$q/upper,workdir=$q/work" "$q/rootfs"
  # --- node /etc/qm = QM's writable /etc (a copy of the QM rootfs /etc, as upstream's setup does)
  if [ ! -d "$U/etc/qm" ]; then
    mkdir -p "$U/etc"
    cp -a "$base/etc" "$U/etc/qm.tmp"
    E=$U/etc/qm.tmp
    # QM's containers.conf, from containers/qm
    cat > "$E/containers/containers.conf" <<'EOC'
[containers]
# nested containers use QM's network
netns = "host"
# QM itself runs at 500 (qm.container OOMScoreAdjust); nested containers at 750
oom_score_adj = 750
EOC
    mkdir -p "$E/containers/systemd"
    # no tty in QM
    ln -sf /dev/null "$E/systemd/system/console-getty.service"
    ln -sf /dev/null "$E/systemd/system/getty@.service"
    # testbed: a local image for nested containers (no registry), imported once into QM's storage
    cat > "$E/systemd/system/qmorch-testbed-image.service" <<'EOC'
[Unit]
Description=qmorch testbed: import localhost/busybox:latest into QM's storage
ConditionPathExists=/usr/share/qmorch-testbed/busybox.tar

[Service]
Type=oneshot
RemainAfterExit=yes
ExecCondition=/bin/sh -c '! podman image exists localhost/busybox:latest'
ExecStart=/usr/bin/podman import --change CMD=/bin/sh /usr/share/qmorch-testbed/busybox.tar localhost/busybox:latest

[Install]
WantedBy=multi-user.target
EOC
    ln -sf ../qmorch-testbed-image.service "$E/systemd/system/multi-user.target.wants/qmorch-testbed-image.service"
    mv "$E" "$U/etc/qm"
  fi
  # --- node /var/qm = QM's /var on ext4
  # (a copy of the rootfs's /var without the package databases: nothing in QM runs dpkg/apt)
  if [ ! -d "$d/qmvar/lib" ]; then
    tar -C "$base/var" --exclude=./lib/dpkg/info --exclude=./lib/apt --exclude=./cache/apt \
        --exclude=./cache/debconf -cf - . | tar -C "$d/qmvar" -xpf -
    mkdir -p "$d/qmvar/tmp"; chmod 1777 "$d/qmvar/tmp"
  fi
  # --- the vendor Quadlet file and the testbed drop-in, in the node
  mkdir -p "$U/usr/share/containers/systemd/qm.container.d" "$U/usr/share/qm"
  seccomp_no_rt "$base"
  cp "$TB/seccomp-no-rt.json" "$U/usr/share/qm/seccomp-no-rt.json"
  cp "$here/qm/qm.container" "$U/usr/share/containers/systemd/qm.container"
  cp "$here/qm/90-testbed.conf" "$U/usr/share/containers/systemd/qm.container.d/90-testbed.conf"
}

########## nodes ##########
node_start() {
  local n=$1 base d idx uuid ns_opt=() extra=() h t0
  t0=$(now)
  base=$(rootfs); d=$(nd "$n"); idx=$(node_idx "$n")
  if alive "$(nspawn_pid "$n")"; then log "$n already running"; return 0; fi
  [ -e "/run/netns/$TB_ID-$n" ] || die "netns $TB_ID-$n missing (run up first)"
  mkdir -p "$d/upper/etc" "$d/work" "$d/merged" "$d/dbus" "$d/containers"
  rm -f "$d/dbus/system_bus_socket" "$d/qmdbus/system_bus_socket"
  echo "$n" > "$d/upper/etc/hostname"
  if is_qm_node "$n"; then
    qm_prep "$n" "$base"
    extra=(--bind="$TB/qm/$n/rootfs:/usr/lib/qm/rootfs" --bind="$d/qmvar:/var/qm"
           --bind="$d/qmdbus:/run/qmorch-testbed/qmdbus")
  fi
  mountpoint -q "$d/merged" || mount -t overlay overlay \
     -o "lowerdir=$base,upperdir=$d/upper,workdir=$d/work" "$d/merged"
  uuid=$(printf '%08x-0000-4000-8000-%012x' "$idx" "$idx")     # -> /etc/machine-id
  for h in $CG_HIER; do mkdir -p "/sys/fs/cgroup/$h/$TB_ID/$n"; done
  # nspawn without a host systemd: --register=no --keep-unit, started from the node's own cgroup
  ( close_fds
    exec setsid sh -c 'for h in '"$CG_HIER"'; do echo $$ > /sys/fs/cgroup/$h/'"$TB_ID/$n"'/cgroup.procs; done; exec "$@"' nspawn \
    systemd-nspawn -D "$d/merged" -M "$n" --uuid="$uuid" -b \
      --console=passive --register=no --keep-unit --capability=all \
      --network-namespace-path="/run/netns/$TB_ID-$n" \
      --bind="$d/dbus:/run/dbus" --bind="$d/containers:/var/lib/containers" \
      "${extra[@]}" ) </dev/null >"$d/console.log" 2>&1 &
  echo $! > "$d/nspawn.pid"
  log "$n: nspawn pid $! (started in $(since "$t0") s)"
}

node_wait() {   # NAME: node systemd running/degraded, and for QM nodes QM's systemd too
  local n=$1 s= q= i end
  end=$(( $(date +%s) + TB_TIMEOUT ))
  while :; do
    alive "$(nspawn_pid "$n")" || { tail -20 "$(nd "$n")/console.log" >&2; die "$n: nspawn exited"; }
    s=$(sysstate "$(node_bus "$n")")
    case $s in running|degraded) break;; esac
    [ "$(date +%s)" -lt "$end" ] || die "$n: timeout waiting for the node (state '$s')"
    sleep 0.1
  done
  [ "$s" = running ] || log "$n: node is $s: $(busctl --address="$(node_bus "$n")" --timeout=2 call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager ListUnitsFiltered as 1 failed 2>/dev/null | grep -o '"[^"]*\.[a-z]*" "[^"]*" "[a-z]*" "failed"' | cut -d' ' -f1 | tr '\n' ' ')"
  is_qm_node "$n" || return 0
  i=0
  while :; do
    q=$(sysstate "$(qm_bus "$n")")
    case $q in running|degraded) break;; esac
    i=$((i+1))
    if [ $((i % 10)) = 0 ] && [ "$(unit_state "$(node_bus "$n")" qm.service)" = failed ]; then
      die "$n: qm.service failed; node journal: $(cmd_exec "$n" journalctl -b -u qm.service --no-pager -n 30 2>&1 | tail -30)"
    fi
    [ "$(date +%s)" -lt "$end" ] || die "$n: timeout waiting for QM (state '$q'); node journal: $(cmd_exec "$n" journalctl -b -u qm.service --no-pager -n 30 2>&1 | tail -30)"
    sleep 0.1
  done
  [ "$q" = running ] || log "$n: QM is $q"
}

node_stop() {   # NAME: TERM the recorded nspawn pid (clean poweroff), KILL after a timeout; unmount; rmdir cgroups
  local n=$1 d p i h t0 pids
  t0=$(now)
  d=$(nd "$n"); p=$(nspawn_pid "$n")
  if alive "$p" && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = systemd-nspawn ]; then
    # nspawn turns TERM into SIGRTMIN+3 for the node's systemd (clean poweroff). A node still in
    # early boot may not have its handler yet and drop it: repeat TERM every 2 s.
    for i in $(seq 0 "${TB_STOP_TENTHS:-300}"); do
      alive "$p" || break
      [ $((i % 20)) = 0 ] && kill -TERM "$p" 2>/dev/null
      sleep 0.1
    done
    if alive "$p"; then log "$n: nspawn $p still alive after TERM, sending KILL"; kill -KILL "$p"; sleep 0.2; fi
    log "$n: nspawn exited after $(since "$t0") s"
  fi
  rm -f "$d/nspawn.pid"
  # processes left in the node's cgroup (after a KILL): only those, by PID, until it is empty
  for i in $(seq 1 50); do
    pids=$(for h in $CG_HIER; do [ -d "/sys/fs/cgroup/$h/$TB_ID/$n" ] && find "/sys/fs/cgroup/$h/$TB_ID/$n" -name cgroup.procs -exec cat {} +; done 2>/dev/null | sort -un)
    [ -n "$pids" ] || break
    for p in $pids; do
      [ "$i" = 1 ] && log "$n: killing leftover pid $p ($(cat "/proc/$p/comm" 2>/dev/null))"
      kill -KILL "$p" 2>/dev/null || true
    done
    sleep 0.1
  done
  umount_under "$d"
  [ -d "$TB/qm/$n/rootfs" ] && umount_under "$TB/qm/$n"
  for i in $(seq 1 20); do
    for h in $CG_HIER; do
      [ -d "/sys/fs/cgroup/$h/$TB_ID/$n" ] && find "/sys/fs/cgroup/$h/$TB_ID/$n" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    [ -d "/sys/fs/cgroup/systemd/$TB_ID/$n" ] || [ -d "/sys/fs/cgroup/unified/$TB_ID/$n" ] || break
    sleep 0.25
  done
  for h in $CG_HIER; do [ -d "/sys/fs/cgroup/$h/$TB_ID/$n" ] && log "$n: cgroup dir /sys/fs/cgroup/$h/$TB_ID/$n still there"; done
  return 0
}

umount_under() {   # every mount at or below DIR, deepest first
  local dir m
  dir=$(readlink -f "$1")
  findmnt -rn -o TARGET | awk -v d="$dir" '$0 == d || index($0, d "/") == 1' | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
}

########## env ##########
write_env() {
  local n p q tmp=$TB/testbed.env.tmp
  {
    echo "# qmorch testbed ($(date -u +%FT%TZ)); sourced by shells, parsed by tests/testbed/env.go"
    echo "TB=$TB"
    echo "TB_ID=$TB_ID"
    echo "TB_NODES=\"$TB_NODES\""
    echo "TB_QM_NODES=\"$TB_QM_NODES\""
    echo "TB_ROOTFS=$(cat "$TB/rootfs.path" 2>/dev/null)"
    for n in $TB_NODES; do
      p=$(node_pid "$n" 2>/dev/null || true)
      echo "NODE_${n}_BUS=$(node_bus "$n")"
      echo "NODE_${n}_PID=$p"
      echo "NODE_${n}_NSPAWN_PID=$(nspawn_pid "$n")"
      echo "NODE_${n}_NETNS=$TB_ID-$n"
      echo "NODE_${n}_ADDR=$TB_SUBNET.$((10+$(node_idx "$n")))"
      echo "NODE_${n}_ROOT=$(nd "$n")/merged"
      if is_qm_node "$n"; then
        q=$(qm_pid "$n" 2>/dev/null || true)
        echo "QM_${n}_BUS=$(qm_bus "$n")"
        echo "QM_${n}_PID=$q"
        echo "QM_${n}_ETC=$(nd "$n")/merged/etc/qm"
      fi
    done
  } > "$tmp"
  mv "$tmp" "$TB/testbed.env"
}

########## commands ##########
cmd_exec() { local p; p=$(node_pid "$1") || die "$1 not running"; shift; nsenter -t "$p" -a "$@"; }
cmd_qm_exec() {
  local p; p=$(qm_pid "$1") || die "QM in $1 not running"; shift
  nsenter -t "$p" -a env CONTAINERS_CONF_OVERRIDE=/usr/share/qmorch-testbed/containers.conf "$@"
}

cmd_up() {
  local t0 n base pids p rc
  t0=$(now)
  [ "$(readlink -f "$TB")" != / ] || die "TB=/ refused"
  if [ -f "$TB/.qmorch-testbed" ] && [ -s "$TB/testbed.env" ]; then
    for n in $TB_NODES; do alive "$(nspawn_pid "$n")" || die "$TB exists with node $n down: run testbed-down first"; done
    log "already up ($TB)"; cat "$TB/testbed.env"; return 0
  fi
  mkdir -p "$TB"; touch "$TB/.qmorch-testbed"
  up_ok=0
  trap 'rc=$?; if [ "$up_ok" != 1 ]; then set +e; log "up failed (rc $rc): cleaning up"; cmd_down; fi; exit $rc' EXIT
  trap 'exit 130' INT TERM
  "$here/deps.sh"
  base=$(rootfs)
  seccomp_no_rt "$base"
  net_up
  # nodes boot in parallel; a node_start failure fails `up` (and the EXIT trap cleans up)
  pids=()
  for n in $TB_NODES; do node_start "$n" & pids+=($!); done
  rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done
  [ $rc = 0 ] || die "a node failed to start"
  for n in $TB_NODES; do node_wait "$n"; done
  write_env
  up_ok=1
  log "up in $(since "$t0") s: $TB/testbed.env"
  cat "$TB/testbed.env"
}

cmd_down() {
  local t0 n h
  t0=$(now)
  if [ -d "$TB" ] && [ ! -f "$TB/.qmorch-testbed" ] && [ -n "$(ls -A "$TB" 2>/dev/null)" ]; then
    die "$TB is not a testbed state dir (no .qmorch-testbed marker): not touching it"
  fi
  # the BlueChi test double of tests/controller.sh (make demo) lives in $TB/controller and talks
  # to the node buses: stop it (by its recorded PID) before its state dir goes away
  if [ -s "$TB/controller/controller.pid" ]; then
    TB=$TB bash "$here/../controller.sh" stop || log "could not stop the test controller"
  fi
  # nodes with a recorded pid, in parallel
  for n in $TB_NODES; do node_stop "$n" & done
  wait
  net_down
  [ -d "$TB" ] && umount_under "$TB"
  for h in $CG_HIER; do [ -d "/sys/fs/cgroup/$h/$TB_ID" ] && rmdir "/sys/fs/cgroup/$h/$TB_ID" 2>/dev/null; done
  if [ -d "$TB" ]; then
    if findmnt -rn -o TARGET | grep -qF "$(readlink -f "$TB")/"; then
      log "mounts left under $TB, not removing it"; findmnt -rn -o TARGET | grep -F "$TB/" >&2; return 1
    fi
    rm -rf --one-file-system "$TB"
  fi
  log "down in $(since "$t0") s"
}

cmd_status() {
  local n
  for n in $TB_NODES; do
    printf '%-8s nspawn=%-7s node=%-9s' "$n" "$(nspawn_pid "$n")" "$(sysstate "$(node_bus "$n")")"
    is_qm_node "$n" && printf ' qm=%s (pid %s)' "$(sysstate "$(qm_bus "$n")")" "$(qm_pid "$n" 2>/dev/null || true)"
    echo
  done
}

cmd=${1:-}; shift || true
case $cmd in
  up) cmd_up ;;
  down) cmd_down ;;
  node-stop)  [ -n "${1:-}" ] || die "NODE?"; node_idx "$1" >/dev/null; t0=$(now); node_stop "$1"; write_env; log "$1 stopped in $(since "$t0") s" ;;
  node-start) [ -n "${1:-}" ] || die "NODE?"; node_idx "$1" >/dev/null; [ -f "$TB/.qmorch-testbed" ] || die "testbed not up"
              t0=$(now); node_start "$1"; node_wait "$1"; write_env; log "$1 started in $(since "$t0") s" ;;
  wait) node_wait "$1" ;;
  status) cmd_status ;;
  env) write_env; cat "$TB/testbed.env" ;;
  exec) n=$1; shift; cmd_exec "$n" "$@" ;;
  qm-exec) n=$1; shift; cmd_qm_exec "$n" "$@" ;;
  *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
