#!/usr/bin/env bash
# Runs every native Go fuzz target in the module for a bounded time each.
#
# Go 1.26's fuzz coordinator can report "context deadline exceeded" at the end
# of a -fuzztime window without any failing input (golang/go#75804, fixed in Go
# 1.27). Such a run wrote no reproducer under testdata/fuzz/<target>/, so it is
# run once more; a second failure of any kind, or any failure that wrote a
# reproducer, fails.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
corpus() { ls "$1" 2>/dev/null | sort || true; }
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)\(' "$dir"/*_test.go 2>/dev/null | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/' | sort -u); do
    for attempt in 1 2; do
      echo "fuzz: $pkg $f ($t)"
      before=$(corpus "$dir/testdata/fuzz/$f")
      if go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" -fuzzminimizetime 1s "$pkg" 2>&1 | tee "$log"; then
        break
      fi
      if [[ $attempt == 1 && $(corpus "$dir/testdata/fuzz/$f") == "$before" ]] &&
        grep -q '^    context deadline exceeded$' "$log"; then
        echo "fuzz: $f: Go's fuzztime deadline race (golang/go#75804), no reproducer written; running it again"
        continue
      fi
      status=1
      break
    done
  done
done
exit $status
