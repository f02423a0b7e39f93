#!/usr/bin/env bash
# Runs every benchmark of the module once per package and prints one table:
# each benchmark's time per op and every metric it reports (ratios first-class).
# BENCHTIME (default 3x) and BENCH (regexp, default .) narrow the run.
set -euo pipefail
cd "$(dirname "$0")/.."
benchtime=${BENCHTIME:-3x}
pattern=${BENCH:-.}
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
status=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  grep -qsE '^func Benchmark' "$dir"/*_test.go || continue
  echo "bench: $pkg" >&2
  go test -run '^$' -bench "$pattern" -benchtime "$benchtime" -benchmem=false -timeout 30m "$pkg" >>"$raw" 2>&1 || status=1
done
awk '
  /^pkg: / { pkg = $2; sub(/^anomalynode\//, "", pkg) }
  /^Benchmark/ {
    name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
    metrics = ""
    for (i = 3; i < NF; i += 2) metrics = metrics sprintf("%s=%s  ", $(i+1), $i)
    printf "| %-10s | %-44s | %s|\n", pkg, name, metrics
  }
  /^(FAIL|panic|--- FAIL)/ { print "!! " $0 }
' "$raw" | { echo "| package    | benchmark                                    | metrics"; echo "|------------|----------------------------------------------|--------"; cat; }
exit $status
