#!/usr/bin/env bash
# The IT staff's console, end to end, in a real browser: `anomalynode serve`
# with its console on the admin listener (token sign-in), two destinations
# (dcmtk storescp; the second down at first), and headless Chromium driven by
# playwright-core (console.mjs) that signs in, watches a series sent with
# `anomalynode send` appear and complete on the Overview without a reload,
# opens its Series page, runs the rule tester on a file, sees the failed
# destination's dead letters and replays them from the page once the
# destination is up. See docs/console.md.
#
#   bash test/e2e/console/run.sh        (make e2e-console builds bin/ first)
#
# Downloads (playwright-core, pinned as in test/e2e/viewer) and the node's
# model are cached under .e2e/. Screenshots and results:
# .e2e/console-artifacts/. The last line is always
# "e2e-console: N passed, M failed"; the exit status is non-zero on any failure.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT"
E2E="$ROOT/.e2e"
ARTIFACTS="$E2E/console-artifacts"
PLAYWRIGHT_VERSION=1.65.1
BIN="${ANOMALYNODE_BIN:-$ROOT/bin/anomalynode}"
export ONNXRUNTIME_LIB="${ONNXRUNTIME_LIB:-$ROOT/.deps/onnxruntime/libonnxruntime.so.1}"

E2E_NAME=e2e-console
. "$ROOT/test/e2e/lib.sh"

# --- set-up (idempotent; cached under .e2e/) ---------------------------------
need=()
for c in storescp chromium node npm curl jq; do command -v "$c" >/dev/null || need+=("$c"); done
if [ ${#need[@]} -gt 0 ]; then
  say "installing test tools (missing: ${need[*]})"
  bash scripts/install-test-tools.sh || die "scripts/install-test-tools.sh failed"
fi
[ -x "$BIN" ] || die "no $BIN (make build)"
mkdir -p "$E2E"
PLAYWRIGHT_CORE="$E2E/node_modules/playwright-core/index.mjs"
if ! grep -qs "\"version\": \"$PLAYWRIGHT_VERSION\"" "$E2E/node_modules/playwright-core/package.json"; then
  say "installing playwright-core@$PLAYWRIGHT_VERSION into .e2e/"
  npm install --silent --no-audit --no-fund --prefix "$E2E" "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null || die "npm install playwright-core"
fi

rm -rf "$E2E"/console-run-*
RUN="$(mktemp -d "$E2E/console-run-XXXXXX")"
rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"
say "run folder $RUN"

# Free loopback ports, from the kernel.
read -r NODE_DICOM NODE_ADMIN ARCHIVE BACKUP < <(node -e '
const net = require("net"); const out = [];
(function next() {
  if (out.length === 4) { console.log(out.join(" ")); return; }
  const s = net.createServer().listen(0, "127.0.0.1", () => { out.push(s.address().port); s.close(next); });
})();')
[ -n "${BACKUP:-}" ] || die "no free ports"

# --- the node's model (a tiny ViT with the DINOv2 contract and a DPMM fitted
# on synthetic normal series, as scripts/demo.sh makes it; small settings) ---
MODEL="$E2E/console-model"
if [ ! -f "$MODEL/model.dpmm" ]; then
  say "making the node's model (cached in $MODEL)"
  mkdir -p "$MODEL"
  "$BIN" mkvit --out "$MODEL/tiny.onnx" --preset tiny --seed 1 >/dev/null || die "mkvit"
  rm -rf "$MODEL/normal" "$MODEL/val"
  "$BIN" synth --out "$MODEL/normal" --series 2 --slices 8 --rows 128 --cols 128 --seed 100 >/dev/null || die "synth normal"
  "$BIN" synth --out "$MODEL/val" --series 1 --slices 8 --rows 128 --cols 128 --seed 200 >/dev/null || die "synth val"
  "$BIN" fit --embedder "$MODEL/tiny.onnx" --normal "$MODEL/normal" --val "$MODEL/val" --out "$MODEL/model.dpmm.tmp" \
    --components 30 --epochs 4 --batch 8 --seed 1 >"$RUN/fit.log" 2>&1 || { tail -20 "$RUN/fit.log" >&2; die "fit"; }
  mv "$MODEL/model.dpmm.tmp" "$MODEL/model.dpmm"
fi

# --- the patient series (MR, sent to the node) and a CT file for the tester ---
"$BIN" synth --out "$RUN/series" --lesions --slices 6 --rows 128 --cols 128 --seed 7 >/dev/null || die "synth series"
"$BIN" synth --out "$RUN/ct" --modality CT --slices 1 --rows 64 --cols 64 --seed 8 >/dev/null || die "synth CT file"

# --- destinations: archive up, backup down until the browser asks for it ----
mkdir -p "$RUN/archive" "$RUN/backup"
storescp -aet ARCHIVE -od "$RUN/archive" "$ARCHIVE" >"$RUN/archive.log" 2>&1 &
pids+=($!)

# --- the node --------------------------------------------------------------
TOKEN="console-e2e-$(date +%s%N)"
echo "$TOKEN" >"$RUN/console.token"
chmod 600 "$RUN/console.token"
cat >"$RUN/node.yaml" <<YAML
# Written by test/e2e/console/run.sh.
node: {name: e2e-console, data_dir: "$RUN/data"}
log: {level: info, format: json}
admin: {listen: "127.0.0.1:$NODE_ADMIN", token_file: "$RUN/console.token"}
dimse: {listen: "127.0.0.1:$NODE_DICOM", ae_title: ANOMALYNODE}
ingest: {series_timeout: 3s, min_free_bytes: 104857600}
inference: {threads: 2, batch: 4}
models:
  mr-brain: {path: "$MODEL/model.dpmm", embedder: "$MODEL/tiny.onnx", fpr: 0.01}
destinations:
  archive: {address: "127.0.0.1:$ARCHIVE", called_ae: ARCHIVE, calling_ae: ANOMALYNODE}
  backup: {address: "127.0.0.1:$BACKUP", called_ae: BACKUP, calling_ae: ANOMALYNODE}
export: {max_attempts: 2, backoff_initial: 500ms, backoff_max: 1s}
routes:
  - {name: ct-not-here, match: {modality: [CT]}, ignore: true}
  - {name: mr-brain, match: {modality: [MR]}, model: mr-brain, destinations: [archive, backup]}
  - {name: everything-else, ignore: true}
YAML
"$BIN" serve --config "$RUN/node.yaml" >"$RUN/serve.log" 2>&1 &
NODE_PID=$!
pids+=("$NODE_PID")
for ((i = 0; i < 300; i++)); do
  curl -fs "http://127.0.0.1:$NODE_ADMIN/readyz" >/dev/null 2>&1 && break
  kill -0 "$NODE_PID" 2>/dev/null || break
  sleep 0.2
done
curl -fs "http://127.0.0.1:$NODE_ADMIN/readyz" >/dev/null 2>&1 || { tail -20 "$RUN/serve.log" >&2; die "the node is not ready"; }
say "node ready: DICOM $NODE_DICOM, console http://127.0.0.1:$NODE_ADMIN/"

# The browser calls these hooks (console.mjs) at the right moments: send the
# series once the Overview is open, bring the backup destination up before
# replaying its dead letters.
cat >"$RUN/send.sh" <<SH
#!/usr/bin/env bash
exec "$BIN" send --addr 127.0.0.1:$NODE_DICOM --called-ae ANOMALYNODE --calling-ae MRSCANNER "$RUN/series/images"
SH
cat >"$RUN/backup-up.sh" <<SH
#!/usr/bin/env bash
storescp -aet BACKUP -od "$RUN/backup" $BACKUP >"$RUN/backup.log" 2>&1 &
echo \$! >"$RUN/backup.pid"
for i in \$(seq 50); do (echo >/dev/tcp/127.0.0.1/$BACKUP) 2>/dev/null && exit 0; sleep 0.1; done
exit 1
SH
chmod +x "$RUN/send.sh" "$RUN/backup-up.sh"

# --- the browser -------------------------------------------------------------
CT_FILE="$(find "$RUN/ct" -name '*.dcm' | head -1)"
PLAYWRIGHT_CORE="$PLAYWRIGHT_CORE" CONSOLE_TOKEN="$TOKEN" SEND="$RUN/send.sh" BACKUP_UP="$RUN/backup-up.sh" \
  ROUTE_FILE="$(find "$RUN/series" -name '*.dcm' | head -1)" CT_FILE="$CT_FILE" \
  timeout 300 node test/e2e/console/console.mjs "http://127.0.0.1:$NODE_ADMIN" "$ARTIFACTS" "$ARTIFACTS/results.json" 2>&1 | tee "$RUN/console.log"
[ -f "$RUN/backup.pid" ] && pids+=("$(cat "$RUN/backup.pid")")
[ -f "$ARTIFACTS/results.json" ] || { tail -30 "$RUN/serve.log" >&2; die "the browser run wrote no results"; }
passed=$((passed + $(jq '[.tests[] | select(.pass)] | length' "$ARTIFACTS/results.json")))
failed=$((failed + $(jq '[.tests[] | select(.pass | not)] | length' "$ARTIFACTS/results.json")))

# The replayed jobs really reached the backup destination (outside the browser).
n=$(find "$RUN/backup" -type f | wc -l)
if [ "$n" -gt 0 ]; then
  echo "TEST PASS backup-received: $n object(s) in the backup destination after the replay"
  passed=$((passed + 1))
else
  echo "TEST FAIL backup-received: the backup destination got nothing after the replay"
  failed=$((failed + 1))
fi
cp "$RUN/serve.log" "$ARTIFACTS/serve.log"
say "artifacts in $ARTIFACTS (results.json, screenshots, serve.log)"
