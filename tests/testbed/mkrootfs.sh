#!/bin/bash
# mkrootfs.sh -- print the path of the cached node rootfs, building it first if needed.
#
# The rootfs is a Debian trixie minbase tree (systemd, dbus, podman 5.4 with Quadlet, crun, ...) that
# boots under systemd-nspawn. It is cached as a directory
#   $TB_CACHE/rootfs-<key>      (TB_CACHE default /var/cache/qmorch-testbed)
# where <key> hashes this script, rootfs.packages, the suite and the mirror, so a kept machine reuses
# it and any change of the recipe builds a new one. The build is atomic (temp directory, then rename)
# and serialised by a lock, so concurrent testbeds never see a half-built tree.
# Nodes and QM only ever use it as an overlay lowerdir: never boot or modify it directly.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SUITE=${TB_SUITE:-trixie}
MIRROR=${TB_MIRROR:-http://deb.debian.org/debian}
CACHE=${TB_CACHE:-/var/cache/qmorch-testbed}
pkgs=$(grep -v '^\s*#' "$here/rootfs.packages" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
key=$( { cat "$here/mkrootfs.sh" "$here/rootfs.packages"; echo "$SUITE $MIRROR"; } | sha256sum | cut -c1-16)
dest=$CACHE/rootfs-$key

if [ "${1:-}" = --key ]; then echo "$key"; exit 0; fi
if [ -f "$dest/.qmorch-testbed-rootfs" ]; then echo "$dest"; exit 0; fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ -f "$dest/.qmorch-testbed-rootfs" ]; then echo "$dest"; exit 0; fi   # built while we waited

tmp=$CACHE/.build-$key.$$
cleanup() {
  # debootstrap mounts proc/sys/dev in the target: never leave them behind
  if [ -d "$tmp" ]; then
    findmnt -rn -o TARGET | grep -F "$tmp/" | sort -r | while read -r m; do umount -l "$m" || true; done
    rm -rf --one-file-system "$tmp"
  fi
}
trap cleanup EXIT
t0=$(date +%s.%N)
echo "mkrootfs: building $SUITE rootfs $key (packages: $pkgs)" >&2
debootstrap --variant=minbase --include="$pkgs" "$SUITE" "$tmp" "$MIRROR" >"$CACHE/build-$key.log" 2>&1 || {
  echo "mkrootfs: debootstrap failed, see $CACHE/build-$key.log" >&2; tail -20 "$CACHE/build-$key.log" >&2; exit 1; }
R=$tmp
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* "$R"/var/log/journal/*
: > "$R/etc/machine-id"                       # each node gets its own id (nspawn --uuid)
rm -f "$R/var/lib/dbus/machine-id"
chroot "$R" passwd -d root >/dev/null
systemctl --root="$R" disable apt-daily-upgrade.timer apt-daily.timer dpkg-db-backup.timer \
   fstrim.timer e2scrub_all.timer e2scrub_reap.service systemd-pstore.service \
   podman-auto-update.timer podman-clean-transient.service podman-restart.service \
   netavark-dhcp-proxy.socket netavark-dhcp-proxy.service netavark-firewalld-reload.service >/dev/null 2>&1 || true
# fails in a container (no module loading)
systemctl --root="$R" mask systemd-modules-load.service >/dev/null 2>&1 || true
# podman in a node (runs QM): /proc/sys is read-only, keyctl is blocked by nspawn's seccomp filter
mkdir -p "$R/etc/containers"
printf '[containers]\ndefault_sysctls = []\nkeyring = false\n' > "$R/etc/containers/containers.conf"
# mount points used by the testbed's nspawn binds (QM rootfs, QM /var, QM bus dir)
mkdir -p "$R/usr/lib/qm/rootfs" "$R/var/qm"
# a tiny local image (no registry here): busybox-static + applet symlinks, as a rootfs tar for
# `podman import` (imported into QM's storage by a unit inside QM, see testbed.sh)
img=$(mktemp -d)
mkdir -p "$img/bin" "$img/sbin" "$img/usr/bin" "$img/usr/sbin" "$img/tmp" "$img/etc" "$img/proc" "$img/sys" "$img/dev" "$img/run" "$img/var"
cp "$R/usr/bin/busybox" "$img/bin/busybox"
for a in $(chroot "$R" /usr/bin/busybox --list-full); do
  [ -e "$img/$a" ] || ln -s /bin/busybox "$img/$a"
done
chmod 1777 "$img/tmp"
mkdir -p "$R/usr/share/qmorch-testbed"
tar -C "$img" --numeric-owner --owner=0 --group=0 -cf "$R/usr/share/qmorch-testbed/busybox.tar" .
rm -rf "$img"
t1=$(date +%s.%N)
printf 'key=%s\nsuite=%s\nbuilt=%s\nbuild_seconds=%.1f\n' "$key" "$SUITE" "$(date -u +%FT%TZ)" \
  "$(echo "$t1 - $t0" | bc 2>/dev/null || awk "BEGIN{print $t1-$t0}")" > "$R/.qmorch-testbed-rootfs"
mv -T "$R" "$dest"
trap - EXIT
echo "mkrootfs: built $dest in $(awk "BEGIN{printf \"%.1f\", $t1-$t0}") s ($(du -sh "$dest" | cut -f1))" >&2
echo "$dest"
