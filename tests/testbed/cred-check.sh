#!/bin/bash
# cred-check.sh [NODE] -- check (on the testbed, with plain busctl) the mechanism qmorch's file delivery
# relies on: a transient oneshot unit on the HOST node's systemd with the file content as SetCredential
# data and a constant `/bin/sh -c` script whose only inputs are argv ($$-escaped for systemd).
# Writes /run/qmorch-credcheck/out.txt in NODE twice: first run exit 0 (written), second run exit 10
# (unchanged, SuccessExitStatus=10). Also checks that systemd itself expands ${CREDENTIALS_DIRECTORY}
# in argv. Prints the exact busctl command lines. Exits non-zero on failure.
set -euo pipefail
TB=${TB:-/var/tmp/qmorch-testbed}
node=${1:-node1}
. "$TB/testbed.env"
eval "bus=\${NODE_${node}_BUS}; root=\${NODE_${node}_ROOT}"
fail() { echo "cred-check: FAIL: $*" >&2; exit 1; }
sd() { busctl --address="$bus" --timeout=10 "$@"; }
prop() {  # UNIT IFACE NAME
  local p; p=$(sd call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager GetUnit s "$1" | sed -n 's/^o "\(.*\)"$/\1/p')
  sd get-property org.freedesktop.systemd1 "$p" "org.freedesktop.systemd1.$2" "$3" | cut -d' ' -f2- | tr -d '"'
}
# payload with characters a shell or systemd would love to interpret
payload=$(printf 'line1 $1 ${HOME} $$ `id` "q" '\''s'\''\n\\ end\n')
bytes=$(printf '%s' "$payload" | od -An -tu1 -v | xargs)
nbytes=$(printf '%s' "$payload" | wc -c)
# The script as systemd receives it: every $ meant for sh is written $$ (systemd turns $$ into $).
script='set -eu; d=$$1; f=$$2; mkdir -p "$$d"; src="$${CREDENTIALS_DIRECTORY}/payload"; if cmp -s "$$src" "$$d/$$f"; then exit 10; fi; t=$$(mktemp "$$d/.$$f.XXXXXX"); cat "$$src" > "$$t"; chmod 0644 "$$t"; sync "$$t"; mv -f "$$t" "$$d/$$f"'

run() {   # UNIT -> prints ActiveState Result ExecMainStatus
  local unit=$1
  set -x
  busctl --address="$bus" -- call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager \
    StartTransientUnit 'ssa(sv)a(sa(sv))' "$unit" fail 5 \
    Type s oneshot \
    RemainAfterExit b true \
    SuccessExitStatus '(aiai)' 1 10 0 \
    SetCredential 'a(say)' 1 payload "$nbytes" $bytes \
    ExecStart 'a(sasb)' 1 /bin/sh 6 /bin/sh -c "$script" sh /run/qmorch-credcheck out.txt false \
    0 >/dev/null || { { set +x; } 2>/dev/null; echo "StartTransientUnit failed"; return 1; }
  { set +x; } 2>/dev/null
  local s i
  for i in $(seq 1 100); do s=$(prop "$unit" Unit ActiveState); case $s in activating) sleep 0.05;; *) break;; esac; done
  echo "$s $(prop "$unit" Service Result) $(prop "$unit" Service ExecMainStatus)"
  sd call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager StopUnit ss "$unit" replace >/dev/null
}

npid=$(eval echo "\${NODE_${node}_PID}")
nsenter -t "$npid" -a rm -rf /run/qmorch-credcheck     # node /run is a tmpfs of its own
r1=$(run "qmorch-credcheck-1-$$.service")
echo "cred-check: first run : $r1"
[ "$r1" = "active success 0" ] || fail "first run: $r1"
got=$(nsenter -t "$(eval echo "\${NODE_${node}_PID}")" -a cat /run/qmorch-credcheck/out.txt)
[ "$got" = "$payload" ] || fail "content differs: '$got' vs '$payload'"
echo "cred-check: content byte-exact ($nbytes bytes)"
r2=$(run "qmorch-credcheck-2-$$.service")
echo "cred-check: second run: $r2"
[ "$r2" = "active success 10" ] || fail "second run: $r2"

# ${CREDENTIALS_DIRECTORY} expanded by systemd itself in argv (not by sh): the echo'd argument
u=qmorch-credcheck-3-$$.service
sd -- call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager \
  StartTransientUnit 'ssa(sv)a(sa(sv))' "$u" fail 4 Type s oneshot RemainAfterExit b true \
  ExecStart 'a(sasb)' 1 /bin/sh 5 /bin/sh -c 'printf %s "$$1" > /run/qmorch-credcheck/expanded' sh '${CREDENTIALS_DIRECTORY}|$$1' false \
  SetCredential 'a(say)' 1 x 1 120 0 >/dev/null
sleep 0.3
exp=$(nsenter -t "$(eval echo "\${NODE_${node}_PID}")" -a cat /run/qmorch-credcheck/expanded)
sd call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager StopUnit ss "$u" replace >/dev/null
echo "cred-check: argv '\${CREDENTIALS_DIRECTORY}|\$\$1' arrived as '$exp'"
case $exp in /run/credentials/$u\|\$1) ;; *) fail "unexpected expansion: $exp";; esac
nsenter -t "$(eval echo "\${NODE_${node}_PID}")" -a rm -rf /run/qmorch-credcheck
echo "cred-check: PASS"
