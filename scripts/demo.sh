#!/usr/bin/env bash
# make demo: the main job on the embedded default (configs/demo.yaml).
# Makes a tiny DINOv2-architecture model, synthesises normal training series and
# a lesion series, fits a DPMM, starts the node, sends it the lesion series by
# C-STORE, waits for the SEG and SC to come back (folder .demo/out, and Orthanc
# when it is installed), prints a summary and stops everything it started.
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

t0=$(date +%s)
rm -rf "$D/data" "$D/out" "$D/lesion" "$D/inbox" "$D/inbox-done" "$D/orthanc"
mkdir -p "$D/out" "$D/inbox"

if [ ! -f "$D/tiny.onnx" ]; then
  say "making a tiny ViT with the DINOv2 architecture and IO contract"
  "$BIN" mkvit --out "$D/tiny.onnx" --preset tiny --seed 1
fi
if [ ! -f "$D/model.dpmm" ]; then
  say "synthesising normal brain MR series (training and validation)"
  rm -rf "$D/normal" "$D/val"
  "$BIN" synth --out "$D/normal" --series 4 --slices 12 --seed 100 >/dev/null
  "$BIN" synth --out "$D/val" --series 2 --slices 12 --seed 200 >/dev/null
  say "fitting the DPMM (K=100, 12 epochs)"
  "$BIN" fit --config configs/demo.yaml --normal "$D/normal" --val "$D/val" --out "$D/model.dpmm" \
    --components 100 --epochs 12 --batch 8 --seed 1 --cache "$D/cache"
fi
say "synthesising a lesion series (the 'patient')"
"$BIN" synth --out "$D/lesion" --lesions --slices 16 --seed 7 >/dev/null

orthanc_port=14242
if command -v Orthanc >/dev/null 2>&1; then
  mkdir -p "$D/orthanc"
  cat >"$D/orthanc/orthanc.json" <<JSON
{ "Name": "ARCHIVE", "StorageDirectory": "$PWD/$D/orthanc/db", "IndexDirectory": "$PWD/$D/orthanc/db",
  "HttpPort": 18042, "DicomPort": $orthanc_port, "DicomAet": "ARCHIVE",
  "RemoteAccessAllowed": false, "AuthenticationEnabled": false, "DicomAlwaysAllowStore": true,
  "DicomModalities": { "node": ["ANOMALYNODE", "127.0.0.1", 11112] } }
JSON
  Orthanc "$D/orthanc/orthanc.json" >"$D/orthanc/orthanc.log" 2>&1 &
  pids+=($!)
  say "Orthanc archive started (REST on http://127.0.0.1:18042)"
fi

say "starting the node (configs/demo.yaml), log in $D/serve.log"
"$BIN" serve --config configs/demo.yaml >"$D/serve.log" 2>&1 &
node_pid=$!
pids+=($node_pid)
for _ in $(seq 1 100); do
  http_get 127.0.0.1 19090 /readyz >/dev/null && break
  kill -0 "$node_pid" 2>/dev/null || { tail -20 "$D/serve.log" >&2; exit 1; }
  sleep 0.2
done
http_get 127.0.0.1 19090 /readyz >/dev/null || { say "node not ready"; tail -20 "$D/serve.log" >&2; exit 1; }

nslices=$(ls "$D/lesion/images" | wc -l)
say "sending $nslices slices to ANOMALYNODE@127.0.0.1:11112 by C-STORE"
ts=$(date +%s.%N)
"$BIN" send --addr 127.0.0.1:11112 --called-ae ANOMALYNODE --calling-ae DEMO_SCU "$D/lesion/images"

say "waiting for the SEG and the SC heat maps in $D/out"
want=$((nslices + 1))
for _ in $(seq 1 600); do
  got=$(find "$D/out" -name '*.dcm' 2>/dev/null | wc -l)
  [ "$got" -ge "$want" ] && break
  kill -0 "$node_pid" 2>/dev/null || { say "node exited"; tail -20 "$D/serve.log" >&2; exit 1; }
  sleep 0.2
done
te=$(date +%s.%N)
got=$(find "$D/out" -name '*.dcm' | wc -l)
[ "$got" -ge "$want" ] || { say "timed out: $got of $want objects"; tail -20 "$D/serve.log" >&2; exit 1; }

# The summary comes from the node's own log line and metrics.
fin=$(grep "series finalised" "$D/serve.log" | tail -1 || true)
anom=$(sed -n 's/.*"anomalous_slices":\([0-9]*\).*/\1/p' <<<"$fin")
metrics=$(http_get 127.0.0.1 19090 /metrics || true)
printf '%s\n' "$metrics" >"$D/metrics.txt"
scored=$(awk '/^anomalynode_slices_scored_total/ {s+=$2} END {print s+0}' <<<"$metrics")
stage_sum=$(awk '/^anomalynode_inference_stage_seconds_sum/ {s+=$2} END {printf "%.0f", s*1000}' <<<"$metrics")
seg=$(grep -rl --include='*.dcm' -a '1.2.840.10008.5.1.4.1.1.66.4' "$D/out" | head -1 || true)
orthanc_n=""
if command -v Orthanc >/dev/null 2>&1; then
  for _ in $(seq 1 50); do
    orthanc_n=$(http_get 127.0.0.1 18042 /instances 2>/dev/null | grep -c '"' || true)
    [ "${orthanc_n:-0}" -ge "$want" ] && break
    sleep 0.2
  done
fi
echo
echo "anomalynode demo summary"
echo "  slices sent:            $nslices"
echo "  slices scored:          $scored"
if [ "$scored" -gt 0 ] && [ "$stage_sum" -gt 0 ]; then
  echo "  time per slice:         $((stage_sum / scored)) ms (decode+preprocess+model+score+upsample)"
fi
echo "  anomalous slices:       ${anom:-?} (painted lesions on $(grep -o '"lesion_pixels": *[1-9]' "$D/lesion/manifest.json" | wc -l) slices;"
echo "                          the demo backbone has random weights, so its maps are not meaningful:"
echo "                          see README 'Real DINOv2 weights')"
awk -v a="$ts" -v b="$te" -v n="$nslices" 'BEGIN { printf "  send start -> SEG + %d SC delivered: %.1f s\n", n, b - a }'
echo "  outputs:                $D/out ($got objects; SEG: ${seg:-?})"
if [ -n "$orthanc_n" ]; then
  echo "  Orthanc archive:        $orthanc_n instances received (SEG + SC), http://127.0.0.1:18042/app/explorer.html while it runs"
fi
echo "  total demo time:        $(( $(date +%s) - t0 )) s"
