# Shared by the end-to-end runners (viewer/run.sh, console/run.sh): the pass
# and fail counters, logging, the processes to stop, and the closing line
# "NAME: N passed, M failed" with a non-zero exit on any failure.
#
#   E2E_NAME=e2e-viewer
#   . "$ROOT/test/e2e/lib.sh"
passed=0
failed=0
pids=()

say() { echo "$E2E_NAME: [$(date +%T)] $*" >&2; }
finish() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  echo "$E2E_NAME: $passed passed, $failed failed"
  if [ "$failed" -gt 0 ] || [ "$passed" -eq 0 ]; then exit 1; fi
  exit "$rc"
}
trap finish EXIT
# die counts a set-up failure as a failed test and stops.
die() { say "FAIL: $*"; failed=$((failed + 1)); exit 1; }
