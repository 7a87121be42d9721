#!/bin/bash
# Packaging check: `make dist`, then `rpmbuild -bb deploy/qmorch.spec` in a temporary topdir from
# that tarball (vendored modules: no network), then `rpm -qlp` must list the binary, every man page
# of docs/man, the bash/zsh/fish completions and the node units of deploy/units.
# Installs rpmbuild when missing (Debian: apt-get install rpm; Fedora: dnf install rpm-build).
# Without a golang RPM (Debian) rpmbuild gets --nodeps and uses the go on PATH.
# Used by `make packaging`, CI and the tmt local plan.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
t0=$(date +%s)
if ! command -v rpmbuild >/dev/null; then
  if command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends rpm >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends rpm >/dev/null; }
  elif command -v dnf >/dev/null; then
    dnf install -y -q rpm-build
  fi
  command -v rpmbuild >/dev/null || { echo "rpm: rpmbuild not available" >&2; exit 1; }
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "rpm: FAIL: $*" >&2; exit 1; }

tarball=$(make -s dist DISTDIR="$tmp/SOURCES" | tail -n 1)
[ -f "$tarball" ] || fail "make dist did not produce a tarball (got '$tarball')"
ver=$(basename "$tarball" .tar.gz); ver=${ver#qmorch-}
tar -tzf "$tarball" > "$tmp/tarball.list"
for f in VERSION COMMIT vendor/modules.txt deploy/qmorch.spec cmd/qmorch/main.go; do
  grep -qx "qmorch-$ver/$f" "$tmp/tarball.list" || fail "tarball has no $f"
done

nodeps=()
rpm -q --whatprovides golang >/dev/null 2>&1 || nodeps=(--nodeps)
rpmbuild -bb "${nodeps[@]}" --define "_topdir $tmp/rpmbuild" --define "_sourcedir $tmp/SOURCES" \
  --define "qmorch_version $ver" deploy/qmorch.spec >"$tmp/rpmbuild.log" 2>&1 ||
  { tail -n 40 "$tmp/rpmbuild.log" >&2; fail "rpmbuild failed (log above)"; }
mapfile -t rpms < <(find "$tmp/rpmbuild/RPMS" -name "qmorch-$ver-*.rpm")
[ ${#rpms[@]} = 1 ] || fail "expected one qmorch RPM, found: ${rpms[*]:-none}"
files=$(rpm -qlp "${rpms[0]}")

# Extended regexps of whole lines ('.' is literal below, escaped here).
want=('/usr/bin/qmorch'
  '/usr/share/bash-completion/completions/qmorch'
  '/usr/share/zsh/site-functions/_qmorch'
  '/usr/share/fish/vendor_completions.d/qmorch.fish'
  '/usr/share/licenses/qmorch(-[^/]+)?/LICENSE') # Fedora: licenses/qmorch, rpm 4.18 default: qmorch-VERSION
# man pages may be compressed by brp-compress
for m in docs/man/*.1; do want+=("/usr/share/man/man1/$(basename "$m")(.gz|.bz2|.xz|.zst)?"); done
for u in deploy/units/*; do want+=("/usr/lib/systemd/system/$(basename "$u")"); done
for re in "${want[@]}"; do
  grep -qxE "${re//./[.]}" <<<"$files" || fail "$re not in $(basename "${rpms[0]}"); it has:"$'\n'"$files"
done
echo "rpm: PASS $(basename "${rpms[0]}"): ${#want[@]} expected files listed ($(( $(date +%s) - t0 ))s)"
