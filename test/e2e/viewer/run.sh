#!/usr/bin/env bash
# The clinician's view, end to end: a synthetic lesion series and our SEG + SC
# in a real archive (Orthanc + DICOMweb), shown by a real viewer (OHIF 3.13.2
# in headless Chromium), judged from screenshot pixels. See docs/viewer-e2e.md.
#
#   bash test/e2e/viewer/run.sh        (make e2e-viewer builds bin/ first)
#
# Everything it downloads or builds lives under .e2e/ (ignored) and is reused:
# the second run only starts the servers and the browser. Screenshots and
# results: .e2e/artifacts/. The last line is always
# "e2e-viewer: N passed, M failed"; the exit status is non-zero on any failure.
#
# E2E_PRODUCER selects who makes the SEG + SC the viewer is shown:
#   both (default)  fixture and node, side by side in the same study;
#   fixture         the output package's builders on the ground-truth masks,
#                   stored into Orthanc by C-STORE (dcmsend): judged against
#                   the painted lesion;
#   node            `anomalynode serve`: the series is sent to the node, the
#                   node returns SEG + SC to Orthanc by C-STORE: judged
#                   against the node's own findings (decoded from its SEG)
#                   and against the painted lesion (Dice >= 0.5, centroid
#                   <= 5 mm; E2E_NODE_JUDGE_LESION=0 skips the latter); a
#                   healthy series must get no SEG. The node runs at the
#                   model's fitted finding limits.
# Each producer also handles the multi-frame case: the same series as ONE
# Enhanced MR instance (frames out of position order) in a study of its own.
# E2E_CASES (a regular expression on check names) runs some browser checks
# only, e.g. E2E_CASES=multiframe.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT"
E2E="$ROOT/.e2e"
ARTIFACTS="$E2E/artifacts"
OHIF_VERSION=3.13.2
PLAYWRIGHT_VERSION=1.65.1
PRODUCER="${E2E_PRODUCER:-both}"
BIN="${ANOMALYNODE_BIN:-$ROOT/bin/anomalynode}"
export ONNXRUNTIME_LIB="${ONNXRUNTIME_LIB:-$ROOT/.deps/onnxruntime/libonnxruntime.so.1}"

E2E_NAME=e2e-viewer
. "$ROOT/test/e2e/lib.sh"

# --- set-up (idempotent; cached under .e2e/) ---------------------------------
need=()
for c in Orthanc dcmsend chromium node npm; do command -v "$c" >/dev/null || need+=("$c"); done
[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
if [ ${#need[@]} -gt 0 ]; then
  say "installing test tools (missing: ${need[*]})"
  bash scripts/install-test-tools.sh || die "scripts/install-test-tools.sh failed"
fi
mkdir -p "$E2E/cache" "$E2E/bin"

OHIF_DIST="$E2E/ohif-$OHIF_VERSION/package/dist"
if [ ! -f "$OHIF_DIST/index.html" ]; then
  tgz="$E2E/cache/ohif-app-$OHIF_VERSION.tgz"
  if [ ! -f "$tgz" ]; then
    say "fetching @ohif/app@$OHIF_VERSION from the npm registry"
    (cd "$E2E/cache" && npm pack --silent "@ohif/app@$OHIF_VERSION" >/dev/null) || die "npm pack @ohif/app@$OHIF_VERSION"
  fi
  rm -rf "$E2E/ohif-$OHIF_VERSION"
  mkdir -p "$E2E/ohif-$OHIF_VERSION"
  tar -xzf "$tgz" -C "$E2E/ohif-$OHIF_VERSION" package/dist || die "extract $tgz"
fi
PLAYWRIGHT_CORE="$E2E/node_modules/playwright-core/index.mjs"
if ! grep -qs "\"version\": \"$PLAYWRIGHT_VERSION\"" "$E2E/node_modules/playwright-core/package.json"; then
  say "installing playwright-core@$PLAYWRIGHT_VERSION into .e2e/"
  npm install --silent --no-audit --no-fund --prefix "$E2E" "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null || die "npm install playwright-core"
fi
go build -o "$E2E/bin/e2e-server" ./test/e2e/viewer/server || die "build the viewer server"
go build -o "$E2E/bin/fixture" ./test/e2e/viewer/fixture || die "build the fixture"

rm -rf "$E2E"/run-*
RUN="$(mktemp -d "$E2E/run-XXXXXX")"
rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"
say "run folder $RUN"

# --- Orthanc with DICOMweb, and our same-origin server -------------------------
wait_http() { # URL SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.1
  done
  return 1
}

read -r ORTHANC_HTTP ORTHANC_DICOM NODE_DICOM NODE_ADMIN < <("$E2E/bin/fixture" ports 4 | tr '\n' ' ')
mkdir -p "$RUN/orthanc"
cat >"$RUN/orthanc/orthanc.json" <<EOF
{
  "Name": "E2E-ARCHIVE",
  "StorageDirectory": "$RUN/orthanc/storage",
  "IndexDirectory": "$RUN/orthanc/storage",
  "HttpPort": $ORTHANC_HTTP,
  "DicomPort": $ORTHANC_DICOM,
  "DicomAet": "ARCHIVE",
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomAlwaysAllowStore": true,
  "DicomAlwaysAllowEcho": true,
  "DicomCheckModalityHost": false,
  "UnknownSopClassAccepted": true,
  "OverwriteInstances": true,
  "DicomModalities": { "node": ["ANOMALYNODE", "127.0.0.1", $NODE_DICOM] },
  "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
  "DicomWeb": { "Enable": true, "Root": "/dicom-web/" }
}
EOF
Orthanc "$RUN/orthanc/orthanc.json" >"$RUN/orthanc/orthanc.log" 2>&1 &
pids+=($!)
ORTHANC="http://127.0.0.1:$ORTHANC_HTTP"
wait_http "$ORTHANC/system" 30 || { tail -20 "$RUN/orthanc/orthanc.log" >&2; die "Orthanc did not start"; }
curl -fs "$ORTHANC/plugins" | grep -q dicom-web || die "Orthanc's DICOMweb plugin is not loaded"

"$E2E/bin/e2e-server" --dist "$OHIF_DIST" --orthanc "$ORTHANC" --addr-file "$RUN/server.addr" >"$RUN/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -s "$RUN/server.addr" ] && break; sleep 0.1; done
VIEWER="http://$(cat "$RUN/server.addr" 2>/dev/null)"
wait_http "$VIEWER/dicom-web/studies" 10 || die "the viewer server did not start"
say "Orthanc $ORTHANC (DICOM $ORTHANC_DICOM), viewer $VIEWER"

# --- data ----------------------------------------------------------------------
"$E2E/bin/fixture" build --out "$RUN/data" || die "fixture build"

store() { # FILES... -> Orthanc by C-STORE
  dcmsend -q -aet E2E -aec ARCHIVE 127.0.0.1 "$ORTHANC_DICOM" "$@"
}

# produce_fixture stands in for the node: the SEG + SC the output package
# builds from the ground-truth masks, stored the way the node stores them.
produce_fixture() {
  store "$RUN/data/series/images/"*.dcm || return 1
  store "$RUN/data/fixture/fixture-seg.dcm" "$RUN/data/fixture/sc/"*.dcm || return 1
  # The multi-frame case (a study of its own): the Enhanced MR instance and
  # the output package's SEG for it.
  store "$RUN/data/multiframe/enhanced.dcm" "$RUN/data/multiframe/multiframe-seg.dcm" || return 1
}

# ==> THE REAL NODE PATH (E2E_PRODUCER=node) <==================================
# The series goes to `anomalynode serve` by C-STORE; the node scores it and
# sends SEG + SC to this Orthanc (AE ARCHIVE at 127.0.0.1:$ORTHANC_DICOM) by
# C-STORE. The source series also goes straight to Orthanc (the viewer needs
# it; a real archive would already hold it). The model (the signal backbone,
# mkvit --preset signal, and a DPMM with its finding calibration fitted on
# synthetic normal series, as in scripts/demo.sh) is cached in
# .e2e/node-model/. A healthy series goes the same way. E2E_NODE_CONFIG may name a
# config of your own; @ORTHANC_DICOM@, @NODE_DICOM@, @NODE_ADMIN@, @RUN@ and
# @MODEL@ in it are replaced.
node_config() {
  cat <<'EOF'
# Written by test/e2e/viewer/run.sh: results go to the test's Orthanc.
node: {name: e2e-viewer, data_dir: "@RUN@/node/data"}
log: {level: info, format: json}
admin: {listen: "127.0.0.1:@NODE_ADMIN@"}
dimse: {listen: "127.0.0.1:@NODE_DICOM@", ae_title: ANOMALYNODE}
ingest: {series_timeout: 3s, min_free_bytes: 104857600}
inference: {threads: 2, batch: 4}
models:
  # The finding limits as fitted (series_fpr 0.05): docs/viewer-e2e.md.
  mr-brain: {path: "@MODEL@/model.dpmm", embedder: "@MODEL@/signal.onnx", fpr: 0.01}
destinations:
  archive: {address: "127.0.0.1:@ORTHANC_DICOM@", called_ae: ARCHIVE, calling_ae: ANOMALYNODE}
export: {max_attempts: 5, backoff_initial: 1s, backoff_max: 10s}
output: {seg_series_description: "Anomaly segmentation (anomalynode e2e)"}
routes:
  - {name: mr-brain, match: {modality: [MR]}, model: mr-brain, destinations: [archive]}
  - {name: everything-else, ignore: true}
EOF
}

produce_node() {
  [ -x "$BIN" ] || { say "no $BIN (make build)"; return 1; }
  "$BIN" serve --help >/dev/null 2>&1 || { say "$BIN serve is not available"; return 1; }
  local model="$E2E/node-model" cfg="$RUN/node/config.yaml" i
  mkdir -p "$RUN/node" "$model"
  if [ -n "${E2E_NODE_CONFIG:-}" ]; then cat "$E2E_NODE_CONFIG"; else node_config; fi |
    sed -e "s|@ORTHANC_DICOM@|$ORTHANC_DICOM|g" -e "s|@NODE_DICOM@|$NODE_DICOM|g" \
      -e "s|@NODE_ADMIN@|$NODE_ADMIN|g" -e "s|@RUN@|$RUN|g" -e "s|@MODEL@|$model|g" >"$cfg"
  # The recipe is part of the cache: another one fits again.
  local recipe="signal+symmetry robust-voi train 4x24 val 4x24 K100 e12"
  if [ ! -f "$model/model.dpmm" ] || [ "$(cat "$model/recipe" 2>/dev/null)" != "$recipe" ]; then
    # The signal backbone (fixed image features with the DINOv2 IO contract,
    # not DINOv2) with the robust VOI, so the node's findings are the painted
    # lesion (docs/mkvit.md); series as long as the fixture's (24 slices).
    say "making the node's model (cached in $model)"
    "$BIN" mkvit --out "$model/signal.onnx" --preset signal >/dev/null || return 1
    rm -rf "$model/normal" "$model/val" "$model/cache"
    "$BIN" synth --out "$model/normal" --series 4 --slices 24 --seed 100 >/dev/null || return 1
    "$BIN" synth --out "$model/val" --series 4 --slices 24 --seed 200 >/dev/null || return 1
    "$BIN" fit --config "$cfg" --normal "$model/normal" --val "$model/val" --out "$model/model.dpmm.tmp" --voi robust \
      --components 100 --epochs 12 --batch 8 --seed 1 --cache "$model/cache" >"$RUN/node/fit.log" 2>&1 ||
      { tail -20 "$RUN/node/fit.log" >&2; return 1; }
    mv "$model/model.dpmm.tmp" "$model/model.dpmm"
    echo "$recipe" >"$model/recipe"
  fi
  # A healthy subject too: the node must send it no SEG (no overlay), only
  # its "no finding" page.
  "$BIN" synth --out "$RUN/data/healthy" --slices 24 --seed 8 >/dev/null || return 1
  store "$RUN/data/series/images/"*.dcm "$RUN/data/multiframe/enhanced.dcm" || return 1
  "$BIN" serve --config "$cfg" >"$RUN/node/serve.log" 2>&1 &
  local node_pid=$!
  pids+=("$node_pid")
  for ((i = 0; i < 300; i++)); do
    curl -fs "http://127.0.0.1:$NODE_ADMIN/readyz" >/dev/null 2>&1 && break
    kill -0 "$node_pid" 2>/dev/null || break
    sleep 0.2
  done
  curl -fs "http://127.0.0.1:$NODE_ADMIN/readyz" >/dev/null 2>&1 || { say "the node is not ready"; tail -20 "$RUN/node/serve.log" >&2; return 1; }
  # The classic series and the multi-frame case's Enhanced MR instance (a
  # study of its own) go to the node together.
  store "$RUN/data/healthy/images/"*.dcm || return 1
  dcmsend -q -aet E2E -aec ANOMALYNODE 127.0.0.1 "$NODE_DICOM" "$RUN/data/series/images/"*.dcm "$RUN/data/multiframe/enhanced.dcm" \
    "$RUN/data/healthy/images/"*.dcm || return 1
  # Wait for a SEG and an SC series that are not the fixture's in both
  # studies (the negatives are stored later).
  local study fseg fsc mfstudy mfseg
  study=$(jq -r .study_uid "$RUN/data/truth.json")
  fseg=$(jq -r .fixture_seg_series_uid "$RUN/data/truth.json")
  fsc=$(jq -r .fixture_sc_series_uid "$RUN/data/truth.json")
  mfstudy=$(jq -r .multiframe.study_uid "$RUN/data/truth.json")
  mfseg=$(jq -r .multiframe.seg_series_uid "$RUN/data/truth.json")
  hstudy=$(jq -r .study_instance_uid "$RUN/data/healthy/manifest.json")
  new_series() { # STUDY MODALITY EXCLUDED-UID
    curl -fs "$ORTHANC/dicom-web/studies/$1/series?Modality=$2" 2>/dev/null |
      jq -e --arg x "$3" '[.[]["0020000E"].Value[0] | select(. != $x)] | length > 0' >/dev/null 2>&1
  }
  for ((i = 0; i < 600; i++)); do
    # Every series gets an OT series from the node (heat maps, or the "no
    # finding" page); a SEG only where it found something, judged below.
    if new_series "$study" OT "$fsc" && new_series "$mfstudy" OT - && new_series "$hstudy" OT -; then
      sleep 3 # let the last heat maps arrive
      return 0
    fi
    kill -0 "$node_pid" 2>/dev/null || { say "the node exited"; break; }
    sleep 0.5
  done
  say "the node did not deliver its outputs within 300 s; log tail:"
  tail -20 "$RUN/node/serve.log" >&2
  return 1
}
# ==============================================================================

case "$PRODUCER" in
  fixture) produce_fixture || die "storing the fixture's series, SEG and SC into Orthanc" ;;
  node) produce_node || die "the node did not deliver SEG + SC" ;;
  both)
    produce_fixture || die "storing the fixture's series, SEG and SC into Orthanc"
    produce_node || die "the node did not deliver SEG + SC"
    ;;
  *) die "unknown E2E_PRODUCER=$PRODUCER (both|fixture|node)" ;;
esac
# The deliberately broken SEGs: the viewer check must catch each of them.
store "$RUN/data/negative/"*.dcm || die "storing the negative SEGs"

"$E2E/bin/fixture" cases --orthanc "$ORTHANC" --truth "$RUN/data/truth.json" \
  --out "$RUN/cases.json" --probe-dir "$RUN/probes" || die "listing the cases"
has_test() { jq -e --arg t "$1" '[.cases[] | select(.test == $t)] | length > 0' "$RUN/cases.json" >/dev/null; }
has_test "seg-fixture" || [ "$PRODUCER" = node ] || die "no SEG from the fixture in Orthanc"
has_test "sc-fixture" || [ "$PRODUCER" = node ] || die "no SC from the fixture in Orthanc"
# The node sends a SEG only when it finds something: none for the lesion
# series is a failed test (it missed the lesion), not a broken run.
node_missed=()
case "$PRODUCER" in fixture | both) has_test seg-multiframe || die "no multi-frame SEG from the fixture in Orthanc" ;; esac
case "$PRODUCER" in node | both)
  for t in seg-node seg-node-multiframe; do has_test "$t" || node_missed+=("$t"); done
  ;;
esac

# --- the browser -------------------------------------------------------------
PLAYWRIGHT_CORE="$PLAYWRIGHT_CORE" timeout 900 node test/e2e/viewer/view.mjs "$RUN/cases.json" "$VIEWER" "$ARTIFACTS" "$ARTIFACTS/results.json" 2>&1 | tee "$RUN/view.log"
[ -f "$ARTIFACTS/results.json" ] || die "the browser run wrote no results"
cp "$RUN/cases.json" "$ARTIFACTS/"
passed=$((passed + $(jq '[.tests[] | select(.pass)] | length' "$ARTIFACTS/results.json")))
failed=$((failed + $(jq '[.tests[] | select(.pass | not)] | length' "$ARTIFACTS/results.json")))
# The node's findings on the multi-frame instance against its findings on
# the classic series (same pixels): both SEGs decoded by our reader in
# `fixture cases`, no browser. A node that scored frame k but filed it under
# another frame, consistently in SEG and SC, passes the viewer checks above
# and fails this one.
if [ "$PRODUCER" != fixture ]; then
  cmp_detail=$(jq -r '.node_multiframe_vs_classic.detail // "missing: no node SEG for both the classic series and the multi-frame instance"' "$RUN/cases.json")
  if jq -e '.node_multiframe_vs_classic.pass == true' "$RUN/cases.json" >/dev/null; then
    echo "TEST PASS node-multiframe-vs-classic: $cmp_detail"
    passed=$((passed + 1))
  else
    echo "TEST FAIL node-multiframe-vs-classic: $cmp_detail"
    failed=$((failed + 1))
  fi
fi
for t in "${node_missed[@]}"; do
  echo "TEST FAIL $t: the node sent no SEG for the lesion series (no finding; its 'no finding' page only)"
  failed=$((failed + 1))
done
# The healthy series: the node sent its "no finding" page and no SEG, so the
# viewer has no overlay to show for it (what Orthanc holds is what OHIF lists).
if [ "$PRODUCER" != fixture ]; then
  hstudy=$(jq -r .study_instance_uid "$RUN/data/healthy/manifest.json")
  count() { # MODALITY: instances of it in the healthy study
    curl -fs -X POST "$ORTHANC/tools/find" \
      -d "{\"Level\":\"Instance\",\"Query\":{\"StudyInstanceUID\":\"$hstudy\",\"Modality\":\"$1\"}}" | jq length
  }
  hseg=$(count SEG) hot=$(count OT)
  if [ "${hseg:-0}" = 0 ] && [ "${hot:-0}" = 1 ]; then
    echo "TEST PASS node-healthy-no-overlay: no SEG series, one 'no finding' page"
    passed=$((passed + 1))
  else
    echo "TEST FAIL node-healthy-no-overlay: ${hseg:-?} SEG series and ${hot:-?} OT instances for the healthy series (want 0 and 1)"
    failed=$((failed + 1))
  fi
fi
say "artifacts in $ARTIFACTS (results.json, screenshots)"
