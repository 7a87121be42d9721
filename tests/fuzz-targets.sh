#!/bin/bash
# Lists the repo's fuzz targets as PKGDIR:FuzzName, one per line (used by `make fuzz`).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+\(' . | sort | while read -r f; do
  dir=./$(dirname "${f#./}")
  grep -oE '^func Fuzz[A-Za-z0-9_]+' "$f" | sed 's/^func //' | while read -r fn; do
    echo "$dir:$fn"
  done
done
