#!/bin/bash
# make bench: builds qmorch, runs the Go benchmarks in tests/bench against the BlueChi test
# double with in-memory nodes, and prints the results as Markdown tables (README "Performance").
# BENCH_SHORT=1 limits the deploy fan-out to N <= 32 (CI). Needs root (the test bus admits only
# root to org.eclipse.bluechi).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Same flags as `make build`, so the size is the shipped binary's.
go build -trimpath -ldflags '-s -w' -o "$tmp/qmorch" ./cmd/qmorch
export QMORCH_BIN=$tmp/qmorch
# deploys record to a state dir: keep the bench out of /var/lib/qmorch
export QMORCH_STATE_DIR=$tmp/state
go test -run '^$' -bench . -benchtime "${BENCHTIME:-1s}" -count 1 -timeout 20m ./tests/bench/ | tee "$tmp/out" >&2
size=$(stat -c %s "$tmp/qmorch")
echo
echo "qmorch $(git describe --tags --always --dirty 2>/dev/null || echo dev), $(nproc) CPUs, $(go version | cut -d' ' -f3)${BENCH_SHORT:+, BENCH_SHORT}"
echo
awk -v size="$size" '
function ms(ns) { return sprintf("%.1f ms", ns / 1e6) }
/^Benchmark/ {
  name = $1; sub(/-[0-9]+$/, "", name)
  ns = ""; rss = ""
  for (i = 2; i <= NF; i++) { if ($(i+1) == "ns/op") ns = $i; if ($(i+1) == "peak-RSS-MiB") rss = $i }
  if (name ~ /^BenchmarkDeploy\//) {
    split(name, p, "/"); job = p[2]; mode = p[3]; n = substr(p[4], 2)
    t[job, mode, n] = ns; ns_seen[n] = 1
  } else if (name ~ /^BenchmarkStatusBinary\//) { split(name, p, "/"); st[p[2]] = ns }
  else if (name == "BenchmarkVersionStartup") ver = ns
  else if (name == "BenchmarkDeployBinary128") { dep128 = ns; peak = rss }
}
END {
  print "Deploy of one unit to N nodes (wall time per deploy; ratio = T(N)/T(1)):"
  print ""
  print "| N | qmorch, instant jobs | ratio | sequential loop, instant jobs | qmorch, 100 ms jobs | ratio | sequential loop, 100 ms jobs | qmorch, testbed model | ratio |"
  print "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  split("1 8 32 128", ns_list, " ")
  for (k = 1; k <= 4; k++) {
    n = ns_list[k]; if (!(n in ns_seen)) continue
    a = t["job0ms", "qmorch", n]; s = t["job0ms", "sequential", n]
    b = t["job100ms", "qmorch", n]; sb = t["job100ms", "sequential", n]
    m = t["testbed-model", "qmorch", n]
    a1 = t["job0ms", "qmorch", 1]; b1 = t["job100ms", "qmorch", 1]; m1 = t["testbed-model", "qmorch", 1]
    printf "| %s | %s | %.2f | %s | %s | %.2f | %s | %s | %.2f |\n", n, ms(a), a / a1, ms(s), ms(b), b / b1, ms(sb), ms(m), m / m1
  }
  print ""
  print "| measurement | result | target |"
  print "|---|---:|---:|"
  if ("units-all" in st) printf "| `qmorch status --all --units`, 100 QM twins x 50 units (5000 rows), process start included | %s | < 300 ms |\n", ms(st["units-all"])
  if ("units-named" in st) printf "| `qmorch status --all u-0 ... (50 named units)`, 100 twins (5000 GetUnitProperties, SINCE/SOURCE) | %s | |\n", ms(st["units-named"])
  if ("nodes" in st) printf "| `qmorch status` nodes table, 100 hosts + 100 twins | %s | |\n", ms(st["nodes"])
  if (ver != "") printf "| `qmorch --version` start-up | %s | |\n", ms(ver)
  printf "| binary size (`-s -w`) | %.1f MiB | |\n", size / 1048576
  if (dep128 != "") printf "| `qmorch deploy --all` to 128 nodes through the binary: wall time / peak RSS | %s / %.1f MiB | |\n", ms(dep128), peak
}' "$tmp/out"
