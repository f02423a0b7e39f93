#!/usr/bin/env bash
# gpu-score.sh: `anomalynode score` end to end on a GPU (inference.device:
# cuda) on one 500-slice series, against the same command on the CPU (ONNX
# Runtime) on the first slices of that series, in one run.
#
# The backbone is mkvit's ViT-S/14 (dinov2-small's shapes, RANDOM weights:
# what it finds means nothing, its cost is the real model's). The DPMM is
# fitted here on the CPU (ONNX Runtime) on a few synthetic series.
#
# Environment:
#   BIN          the anomalynode binary (default .gpu/anomalynode from make
#                gpu-bundle, else bin/anomalynode); device cuda needs a
#                -tags cuda build and an NVIDIA GPU
#   DEVICE       cuda (default) or cpu, for the main run
#   PRESET       mkvit preset (default vits14)
#   SLICES       slices of the scored series (default 500)
#   CPU_SLICES   slices the CPU comparison scores (default 32; 0 skips it)
#   RES          rows and columns of the synthetic slices (default 512)
#   BATCH        inference.batch (default 32)
#   PRECISION    inference.gpu_precision (default bf16)
#   ONNXRUNTIME_LIB  ONNX Runtime for fit and the CPU run
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf 'gpu-score: %s\n' "$*" >&2; }

BIN=${BIN:-}
if [[ -z $BIN ]]; then
	BIN=bin/anomalynode
	[[ -x .gpu/anomalynode ]] && BIN=.gpu/anomalynode
fi
DEVICE=${DEVICE:-cuda} PRESET=${PRESET:-vits14} SLICES=${SLICES:-500} CPU_SLICES=${CPU_SLICES:-32}
RES=${RES:-512} BATCH=${BATCH:-32} PRECISION=${PRECISION:-bf16}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT

cfg() { # cfg DEVICE FILE
	cat >"$2" <<YAML
inference:
  device: $1
  gpu_precision: $PRECISION
  batch: $BATCH
models:
  brain:
    path: $D/model.dpmm
    embedder: $D/backbone.onnx
YAML
}
cfg cpu "$D/cpu.yaml"
cfg "$DEVICE" "$D/run.yaml"

t0=$SECONDS
"$BIN" mkvit --out "$D/backbone.onnx" --preset "$PRESET" --seed 1 >/dev/null
"$BIN" synth --out "$D/normal" --series 4 --slices 8 --seed 100 --rows "$RES" --cols "$RES" >/dev/null
"$BIN" synth --out "$D/val" --series 2 --slices 8 --seed 200 --rows "$RES" --cols "$RES" >/dev/null
"$BIN" fit --config "$D/cpu.yaml" --normal "$D/normal" --val "$D/val" --out "$D/model.dpmm" \
	--components 50 --epochs 3 --batch 8 --seed 1 >"$D/fit.log" 2>&1 || { tail -20 "$D/fit.log" >&2; exit 1; }
"$BIN" synth --out "$D/series" --slices "$SLICES" --seed 7 --rows "$RES" --cols "$RES" >/dev/null
log "backbone, model and a $SLICES-slice ${RES}x$RES series ready in $((SECONDS - t0)) s"

run() { # run CONFIG IN OUT
	local t=$SECONDS
	"$BIN" score --config "$1" --model brain --in "$2" --out "$3" >"$3.txt" 2>"$3.err" || { cat "$3.txt"; tail -20 "$3.err" >&2; return 1; }
	echo "$(grep '^scored ' "$3.txt"); $(grep -o 'wall: .*' "$3.txt")"
}
main=$(run "$D/run.yaml" "$D/series" "$D/out-$DEVICE")
cpu=""
if [[ $CPU_SLICES -gt 0 ]]; then
	mkdir -p "$D/first"
	ls "$D/series/images" | head -n "$CPU_SLICES" | while read -r f; do ln -s "$D/series/images/$f" "$D/first/$f"; done
	cpu=$(run "$D/cpu.yaml" "$D/first" "$D/out-cpu")
fi
rate() { sed -E 's/.*: ([0-9.]+) slices\/s.*/\1/' <<<"$1"; }
echo
echo "### anomalynode score end to end ($PRESET backbone, random weights; ${RES}x$RES synthetic MR; batch $BATCH)"
echo
echo "| run | result |"
echo "|---|---|"
echo "| $DEVICE ($PRECISION), $SLICES slices | $main |"
[[ -n $cpu ]] && echo "| cpu (ONNX Runtime, $(nproc) cores), first $CPU_SLICES slices | $cpu |"
if [[ -n $cpu ]]; then
	awk -v g="$(rate "$main")" -v c="$(rate "$cpu")" 'BEGIN { if (c > 0) printf "\n%s / cpu slices/s: %.1fx\n", "'"$DEVICE"'", g / c }'
fi
