#!/usr/bin/env bash
# make demo: the main job on the embedded default (configs/demo.yaml).
# Makes the demo backbone (DEMO_PRESET, default "signal": fixed image features
# with the DINOv2 IO contract, not DINOv2, not for clinical use; "tiny" or
# "vits14" give random-weight DINOv2 architectures for timing), synthesises
# normal training series and a lesion series, fits a DPMM with its finding
# calibration, starts the node, sends it the lesion series and then a healthy
# series by C-STORE, waits for their outputs (folder .demo/out, and Orthanc when
# it is installed), prints a summary (findings against the painted lesions; no
# overlay on the healthy series) and stops everything it started.
#
# Finding limits: DEMO_SERIES_FPR (default 0.5) is the model's series_fpr in
# the demo's config: with the demo's 4 healthy validation series the peak
# limit sits just above the 3rd strongest of them, so up to 2 of those 4 would
# show a finding. At the fitted default (0.05: above all 4) the signal
# backbone finds none of the painted lesions (issue 19, open; the detection
# rate is measured by `anomalynode eval`); at 0.5 it finds the largest one and
# the healthy series (seed 8) stays clean. Both series are chosen: at 0.5 this
# model finds 1 of 12 lesions of 7 lesion series and shows a finding in 5 of 7
# healthy series (seeds 1-6 and 8; eval, docs/fit-eval.md). DEMO_SERIES_FPR= (empty)
# keeps the fitted limits.
#
# Ports: DEMO_PORT_BASE=P uses P (DICOM), P+1 (admin), P+2 (Orthanc DICOM) and
# P+3 (Orthanc REST); without it each port is the usual one (11112, 19090,
# 14242, 18042) when free, else the next free one, so the demo runs next to
# other services.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/anomalynode}
D=.demo
export ONNXRUNTIME_LIB=${ONNXRUNTIME_LIB:-$PWD/.deps/onnxruntime/libonnxruntime.so.1}
say() { printf '\033[1mdemo:\033[0m %s\n' "$*" >&2; }
# http_get HOST PORT PATH prints the body of a plain HTTP GET (bash only, no curl
# needed on a fresh machine); it fails unless the status is 200.
http_get() {
  local resp
  { exec 3<>"/dev/tcp/$1/$2"; } 2>/dev/null || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" "$1" >&3
  resp=$(cat <&3)
  exec 3<&-
  [[ "$resp" == "HTTP/1."?" 200"* ]] || return 1
  printf '%s\n' "${resp#*$'\r\n\r\n'}"
}
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() { ! { exec 4<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || { exec 4<&-; return 1; }; }
# pick_port PREFERRED: PREFERRED when free, else the next free port above it.
pick_port() {
  local p=$1
  while ! port_free "$p"; do p=$((p + 1)); [ "$p" -lt $(($1 + 200)) ] || { say "no free port near $1"; exit 1; }; done
  echo "$p"
}
if [ -n "${DEMO_PORT_BASE:-}" ]; then
  dicom_port=$DEMO_PORT_BASE admin_port=$((DEMO_PORT_BASE + 1))
  orthanc_port=$((DEMO_PORT_BASE + 2)) orthanc_http=$((DEMO_PORT_BASE + 3))
else
  dicom_port=$(pick_port 11112) admin_port=$(pick_port 19090)
  orthanc_port=$(pick_port 14242) orthanc_http=$(pick_port 18042)
fi
PRESET=${DEMO_PRESET:-signal}
SERIES_FPR=${DEMO_SERIES_FPR-0.5}

t0=$(date +%s)
rm -rf "$D/data" "$D/out" "$D/lesion" "$D/healthy" "$D/inbox" "$D/inbox-done" "$D/orthanc"
mkdir -p "$D/out" "$D/inbox"

# The node's configuration: configs/demo.yaml with this run's ports and backbone.
sed -e "s/127.0.0.1:11112/127.0.0.1:$dicom_port/; s/127.0.0.1:19090/127.0.0.1:$admin_port/; s/127.0.0.1:14242/127.0.0.1:$orthanc_port/" \
  -e "s#\.demo/signal\.onnx#$D/$PRESET.onnx#; s#\.demo/model-signal\.dpmm#$D/model-$PRESET.dpmm#" configs/demo.yaml >"$D/demo.yaml"
grep -q '^    series_fpr: 0.5$' "$D/demo.yaml" || { say "configs/demo.yaml has no 'series_fpr: 0.5' line"; exit 1; }
if [ -n "$SERIES_FPR" ]; then
  sed -i "s/^    series_fpr: 0.5$/    series_fpr: $SERIES_FPR/" "$D/demo.yaml"
  grep -q "^    series_fpr: $SERIES_FPR$" "$D/demo.yaml" || { say "could not set series_fpr in $D/demo.yaml"; exit 1; }
  k=$(awk -v f="$SERIES_FPR" 'BEGIN { print int(f * 4 + 1e-9) }')
  limits="series_fpr $SERIES_FPR, volume >= 100 mm3 (demo override of the fitted 0.05: $k of the 4 healthy validation series may show a finding)"
else
  sed -i '/^    series_fpr: 0.5$/d' "$D/demo.yaml"
  limits="as fitted (series_fpr 0.05, volume >= 100 mm3)"
fi
CFG=$D/demo.yaml
MODEL=$D/model-$PRESET.dpmm

if [ ! -f "$D/$PRESET.onnx" ]; then
  say "making the demo backbone (mkvit --preset $PRESET)"
  seed=(--seed 1)
  [ "$PRESET" = signal ] && seed=() # fixed features: no weights to seed
  "$BIN" mkvit --out "$D/$PRESET.onnx" --preset "$PRESET" "${seed[@]}"
fi
# A model file from before finding calibration is fitted again.
if [ -f "$MODEL" ] && ! grep -aq '"findings"' "$MODEL"; then
  say "$MODEL has no finding calibration: fitting it again"
  rm -f "$MODEL"
fi
if [ ! -f "$MODEL" ]; then
  say "synthesising normal brain MR series (training and validation)"
  rm -rf "$D/normal" "$D/val"
  "$BIN" synth --out "$D/normal" --series 6 --slices 16 --seed 100 >/dev/null
  "$BIN" synth --out "$D/val" --series 4 --slices 16 --seed 200 >/dev/null
  say "fitting the DPMM (K=100, 12 epochs)"
  # The robust VOI (slice / median of its above-mean pixels) keeps bright
  # lesions apart from white matter (docs/mkvit.md); the model file keeps it.
  "$BIN" fit --config "$CFG" --normal "$D/normal" --val "$D/val" --out "$MODEL" --voi robust \
    --components 100 --epochs 12 --batch 8 --seed 1 --cache "$D/cache-$PRESET"
fi
say "synthesising a lesion series (the 'patient') and a healthy one"
"$BIN" synth --out "$D/lesion" --lesions --slices 16 --seed 7 >/dev/null
"$BIN" synth --out "$D/healthy" --slices 16 --seed 8 >/dev/null

if command -v Orthanc >/dev/null 2>&1; then
  mkdir -p "$D/orthanc"
  cat >"$D/orthanc/orthanc.json" <<JSON
{ "Name": "ARCHIVE", "StorageDirectory": "$PWD/$D/orthanc/db", "IndexDirectory": "$PWD/$D/orthanc/db",
  "HttpPort": $orthanc_http, "DicomPort": $orthanc_port, "DicomAet": "ARCHIVE",
  "RemoteAccessAllowed": false, "AuthenticationEnabled": false, "DicomAlwaysAllowStore": true,
  "DicomModalities": { "node": ["ANOMALYNODE", "127.0.0.1", $dicom_port] } }
JSON
  Orthanc "$D/orthanc/orthanc.json" >"$D/orthanc/orthanc.log" 2>&1 &
  pids+=($!)
  say "Orthanc archive started (REST on http://127.0.0.1:$orthanc_http)"
fi

say "starting the node ($CFG: configs/demo.yaml on this run's ports), log in $D/serve.log"
"$BIN" serve --config "$CFG" >"$D/serve.log" 2>&1 &
node_pid=$!
pids+=($node_pid)
for _ in $(seq 1 100); do
  http_get 127.0.0.1 "$admin_port" /readyz >/dev/null && break
  kill -0 "$node_pid" 2>/dev/null || { tail -20 "$D/serve.log" >&2; exit 1; }
  sleep 0.2
done
http_get 127.0.0.1 "$admin_port" /readyz >/dev/null || { say "node not ready"; tail -20 "$D/serve.log" >&2; exit 1; }

# finalised UID: the node's "series finalised" log line of a series.
finalised() { grep 'series finalised' "$D/serve.log" | grep -F "\"series\":\"$1\"" | tail -1 || true; }
# send_and_wait DIR: C-STORE the series in DIR, wait until the node finalised
# it and the folder destination holds every object it built.
send_and_wait() {
  local dir=$1 uid study fin objs n
  uid=$(sed -n 's/.*"series_instance_uid": *"\([^"]*\)".*/\1/p' "$dir/manifest.json" | head -1)
  study=$(sed -n 's/.*"study_instance_uid": *"\([^"]*\)".*/\1/p' "$dir/manifest.json" | head -1)
  n=$(ls "$dir/images" | wc -l)
  say "sending $n slices of $(basename "$dir") to ANOMALYNODE@127.0.0.1:$dicom_port by C-STORE"
  "$BIN" send --addr "127.0.0.1:$dicom_port" --called-ae ANOMALYNODE --calling-ae DEMO_SCU "$dir/images"
  for _ in $(seq 1 600); do
    fin=$(finalised "$uid")
    if [ -n "$fin" ]; then
      objs=$(sed -n 's/.*"objects":\([0-9]*\).*/\1/p' <<<"$fin")
      # The folder destination files objects by study (the source's) and
      # output series; each synthetic series is a study of its own.
      [ "$(find "$D/out/$study" -name '*.dcm' 2>/dev/null | wc -l)" -ge "${objs:-1}" ] && return 0
    fi
    kill -0 "$node_pid" 2>/dev/null || { say "node exited"; tail -20 "$D/serve.log" >&2; exit 1; }
    sleep 0.2
  done
  say "timed out waiting for the outputs of $(basename "$dir")"; tail -20 "$D/serve.log" >&2; exit 1
}

nslices=$(ls "$D/lesion/images" | wc -l)
ts=$(date +%s.%N)
send_and_wait "$D/lesion"
te=$(date +%s.%N)
send_and_wait "$D/healthy"
got=$(find "$D/out" -name '*.dcm' | wc -l)

# The summary comes from the node's own log lines and metrics, and from the
# SEGs it returned compared with the painted lesions.
lesion_uid=$(sed -n 's/.*"series_instance_uid": *"\([^"]*\)".*/\1/p' "$D/lesion/manifest.json" | head -1)
healthy_uid=$(sed -n 's/.*"series_instance_uid": *"\([^"]*\)".*/\1/p' "$D/healthy/manifest.json" | head -1)
lesion_fin=$(finalised "$lesion_uid")
healthy_fin=$(finalised "$healthy_uid")
nfind=$(sed -n 's/.*"findings":\([0-9]*\).*/\1/p' <<<"$lesion_fin")
hfind=$(sed -n 's/.*"findings":\([0-9]*\).*/\1/p' <<<"$healthy_fin")
cmp_lesion=$("$BIN" compare --series "$D/lesion" --outputs "$D/out")
cmp_healthy=$("$BIN" compare --series "$D/healthy" --outputs "$D/out")
healthy_segs=$(sed -n 's/^SEGs \([0-9]*\).*/\1/p' <<<"$cmp_healthy")
metrics=$(http_get 127.0.0.1 "$admin_port" /metrics || true)
printf '%s\n' "$metrics" >"$D/metrics.txt"
scored=$(awk '/^anomalynode_slices_scored_total/ {s+=$2} END {print s+0}' <<<"$metrics")
stage_sum=$(awk '/^anomalynode_inference_stage_seconds_sum/ {s+=$2} END {printf "%.0f", s*1000}' <<<"$metrics")
orthanc_n=""
if command -v Orthanc >/dev/null 2>&1; then
  for _ in $(seq 1 50); do
    orthanc_n=$(http_get 127.0.0.1 "$orthanc_http" /instances 2>/dev/null | grep -c '"' || true)
    [ "${orthanc_n:-0}" -ge "$got" ] && break
    sleep 0.2
  done
fi
echo
echo "anomalynode demo summary (backbone: mkvit --preset $PRESET)"
echo "  slices sent:            $nslices (lesion series) + $(ls "$D/healthy/images" | wc -l) (healthy series)"
echo "  slices scored:          $scored"
if [ "$scored" -gt 0 ] && [ "$stage_sum" -gt 0 ]; then
  echo "  time per slice:         $((stage_sum / scored)) ms (decode+preprocess+model+score+upsample)"
fi
echo "  finding limits:         $limits"
if [ -n "$nfind" ]; then
  echo "  lesion series:          $nfind findings; against the painted lesions:"
  sed 's/^/                          /' <<<"$cmp_lesion"
else
  echo "  lesion series:          the model has no finding calibration (per-pixel masks):"
  sed 's/^/                          /' <<<"$cmp_lesion"
fi
if [ "${hfind:-x}" = 0 ] && [ "${healthy_segs:-x}" = 0 ]; then
  echo "  healthy series:         no finding, no SEG overlay (one 'no finding' page)"
else
  echo "  healthy series:         ${hfind:-?} findings, ${healthy_segs:-?} SEG(s) returned"
fi
if [ "$PRESET" != signal ]; then
  echo "                          (backbone $PRESET has random weights: its maps are not meaningful)"
fi
awk -v a="$ts" -v b="$te" -v n="$nslices" 'BEGIN { printf "  lesion series send start -> outputs delivered: %.1f s\n", b - a }'
echo "  outputs:                $D/out ($got objects)"
if [ -n "$orthanc_n" ]; then
  echo "  Orthanc archive:        $orthanc_n instances received, http://127.0.0.1:$orthanc_http/app/explorer.html while it runs"
fi
echo "  ports:                  DICOM $dicom_port, admin $admin_port, Orthanc $orthanc_port/$orthanc_http"
echo "  total demo time:        $(( $(date +%s) - t0 )) s"
