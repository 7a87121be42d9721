#!/bin/bash
# deps.sh -- install the host packages the testbed needs (idempotent; CI calls it).
# Installs only what is missing; runs `apt-get update` only when something must be installed.
set -euo pipefail
pkgs=(systemd-container debootstrap dbus dbus-bin zstd iproute2 util-linux procps debian-archive-keyring)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for b in systemd-nspawn debootstrap busctl zstd ip nsenter mountpoint pgrep dbus-send; do
  command -v "$b" >/dev/null || { echo "deps.sh: $b still missing" >&2; exit 1; }
done
