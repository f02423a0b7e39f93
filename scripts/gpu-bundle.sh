#!/usr/bin/env bash
# gpu-bundle.sh: build the cuda-tagged test binary of ./cuda and a cuda-tagged
# anomalynode (stripped, for scripts/gpu-score.sh) HERE, for a GPU machine
# that has the CUDA libraries and a driver but no Go toolchain (the device
# machines lent to some tasks are like that).
#
# The binary is linked against stub libraries named after the device's sonames
# (libcublas.so.$CUDA_MAJOR, libcuda.so.1) that export the same symbols without
# symbol versions, so that on the device it binds to whatever cuBLAS is there:
# Debian's toolkit here is CUDA 11.8, whose libcublas.so.11 would otherwise be
# recorded with versioned symbols the device's cuBLAS 12/13 does not define.
# scripts/gpu-check.sh finds the binary in .gpu/ and runs it without building.
#
# Needs the CUDA headers (make check-cuda installs them once).
#
# Environment:
#   CUDA_MAJOR   cuBLAS major version to name in the binary (default 13; the
#                check also maps it onto another major it finds on the device)
#   GPU_BUNDLE   output folder (default .gpu, git-ignored; carry it to the device)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'gpu-bundle: %s\n' "$*" >&2; }

major=${CUDA_MAJOR:-13}
out=${GPU_BUNDLE:-.gpu}
libdir=/usr/lib/x86_64-linux-gnu
if [[ ! -f /usr/include/cuda.h || ! -f /usr/include/cublas_v2.h ]]; then
	log "FAILED: CUDA headers missing; run 'make check-cuda' once first"
	exit 1
fi
command -v gcc >/dev/null || { log "FAILED: gcc not found (cgo needs it)"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export CGO_ENABLED=1

# 1. Link once against the local toolkit to learn which symbols the binary needs.
log "building the cuda-tagged tests against the local toolkit"
CGO_LDFLAGS="-L$libdir -L$libdir/stubs" go test -c -tags cuda -o "$tmp/probe.test" ./cuda

# 2. Stubs: every cuBLAS / driver symbol the binary takes, unversioned, under the
#    device's sonames. Their bodies never run: the device's libraries replace them.
stub() { # stub SONAME PATTERN
	local soname=$1 pattern=$2 name=${1%%.so*}
	nm -D --undefined-only "$tmp/probe.test" | awk '{print $2}' | sed 's/@.*//' | grep -E "$pattern" | sort -u |
		awk '{printf "void %s(void) {}\n", $1}' >"$tmp/$name.c"
	[[ -s $tmp/$name.c ]] || { log "FAILED: no symbols matching $pattern in the probe"; exit 1; }
	gcc -shared -fPIC -Wl,-soname,"$soname" -o "$tmp/stubs/$name.so" "$tmp/$name.c"
	log "stub $soname: $(wc -l <"$tmp/$name.c") symbols"
}
mkdir -p "$tmp/stubs"
stub "libcublas.so.$major" '^cublas'
stub libcuda.so.1 '^cu[A-Z]'

# 3. The real link, against the stubs only.
log "linking against the stubs (libcublas.so.$major, libcuda.so.1)"
CGO_LDFLAGS="-L$tmp/stubs" go test -c -tags cuda -o "$tmp/cuda.test" ./cuda
needed=$(readelf -d "$tmp/cuda.test" | awk '/NEEDED/ {gsub(/[][]/, "", $NF); print $NF}' | tr '\n' ' ')
if readelf -V "$tmp/cuda.test" | grep -q 'libcublas.so'; then
	log "FAILED: the binary still asks for versioned cuBLAS symbols"
	exit 1
fi
log "building anomalynode -tags cuda (stripped) against the stubs"
CGO_LDFLAGS="-L$tmp/stubs" go build -tags cuda -trimpath -ldflags "-s -w" -o "$tmp/anomalynode" ./cmd/anomalynode
mkdir -p "$out"
install -m 0755 "$tmp/cuda.test" "$out/cuda.test"
install -m 0755 "$tmp/anomalynode" "$out/anomalynode"
{
	echo "built $(date -u +%Y-%m-%dT%H:%MZ) from $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
	echo "needs: $needed"
} >"$out/MANIFEST"
log "ok: $out/cuda.test ($(du -h "$out/cuda.test" | cut -f1); needs $needed), $out/anomalynode ($(du -h "$out/anomalynode" | cut -f1))"
log "on the device: bash scripts/gpu-check.sh (carry $out)"
