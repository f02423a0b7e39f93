#!/usr/bin/env bash
# check-cuda.sh: compile-check the cuda-tagged code on a machine without a GPU.
#
# Installs Debian's non-free nvidia-cuda-dev (CUDA 11.8 headers and stub
# libraries, ~770 MB) once, then runs `go vet -tags cuda` and
# `go build -tags cuda`. Nothing here needs a GPU: it proves the cgo bindings of
# gorgonia.org/cu and our cuda/ package compile and link. Run-time checks on a
# device are scripts/gpu-check.sh.
#
# Environment:
#   CHECK_CUDA_NO_INSTALL=1   fail instead of installing when the headers are missing
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'check-cuda: %s\n' "$*" >&2; }

have_cuda_dev() {
	[[ -f /usr/include/cuda.h && -f /usr/include/cublas_v2.h && -f /usr/include/nvrtc.h ]] &&
		ls /usr/lib/x86_64-linux-gnu/libcublas.so >/dev/null 2>&1 &&
		ls /usr/lib/x86_64-linux-gnu/libnvrtc.so >/dev/null 2>&1 &&
		{ ls /usr/lib/x86_64-linux-gnu/libcuda.so >/dev/null 2>&1 ||
			ls /usr/lib/x86_64-linux-gnu/stubs/libcuda.so >/dev/null 2>&1 ||
			ls /usr/lib/x86_64-linux-gnu/libcuda.so.1 >/dev/null 2>&1; }
}

install_cuda_dev() {
	if [[ "${CHECK_CUDA_NO_INSTALL:-}" == 1 ]]; then
		log "CUDA headers missing and CHECK_CUDA_NO_INSTALL=1"
		exit 1
	fi
	local sudo=""
	if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
	. /etc/os-release
	local codename="${VERSION_CODENAME:-bookworm}"
	# Reuse the mirror the machine already uses so a snapshot or proxy keeps working.
	local uri="http://deb.debian.org/debian"
	local src
	for src in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
		[[ -f $src ]] || continue
		local found
		found=$(grep -m1 -E '^URIs: .*/debian/?$' "$src" 2>/dev/null | awk '{print $2}') || true
		if [[ -z $found ]]; then
			found=$(grep -m1 -E '^deb +[^ ]*/debian/? ' "$src" 2>/dev/null | awk '{print $2}') || true
		fi
		if [[ -n $found ]]; then uri=$found; break; fi
	done
	local list=/etc/apt/sources.list.d/anomalynode-nonfree.sources
	log "adding $list ($uri $codename contrib non-free)"
	$sudo tee "$list" >/dev/null <<EOF
# Added by anomalynode scripts/check-cuda.sh: nvidia-cuda-dev lives in non-free and
# needs nvidia-support from contrib; main is already in the machine's own list.
Types: deb
URIs: $uri
Suites: $codename ${codename}-updates
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	# A full update: the dependencies from main need current lists too.
	$sudo apt-get update -qq
	log "installing nvidia-cuda-dev (about 770 MB, once per machine)"
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nvidia-cuda-dev
}

if have_cuda_dev; then
	log "CUDA headers and libraries present"
else
	install_cuda_dev
	have_cuda_dev || { log "nvidia-cuda-dev installed but headers/libraries not found"; exit 1; }
fi

# Debian puts the headers in /usr/include and the libraries in the multiarch
# directory; libcuda.so (the driver) is only a stub here, enough to link.
libdir=/usr/lib/x86_64-linux-gnu
ldflags="-L$libdir"
if [[ -d $libdir/stubs ]]; then ldflags="$ldflags -L$libdir/stubs"; fi
export CGO_ENABLED=1
export CGO_CFLAGS="${CGO_CFLAGS:-} -I/usr/include"
export CGO_LDFLAGS="${CGO_LDFLAGS:-} $ldflags"

log "PTX of cuda/kernels.cu is current (NVRTC runs on the CPU)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go run -tags cuda ./cuda/internal/genptx cuda/kernels.cu "$tmp/kernels_ptx.go"
if ! cmp -s "$tmp/kernels_ptx.go" cuda/kernels_ptx.go; then
	log "cuda/kernels_ptx.go is stale: run go generate -tags cuda ./cuda"
	diff -u cuda/kernels_ptx.go "$tmp/kernels_ptx.go" | head -20 >&2 || true
	exit 1
fi
log "go vet -tags cuda ./cuda/..."
go vet -tags cuda ./cuda/...
log "go build -tags cuda ./..."
go build -tags cuda ./...
# The test binary links against libcuda/libcublas but is not run: without a
# GPU gorgonia.org/cu's start-up (cuInit) would exit. scripts/gpu-check.sh runs it.
log "go test -c -tags cuda ./cuda (links the GPU tests)"
go test -c -tags cuda -o "$tmp/cuda.test" ./cuda
log "ok: the cuda-tagged code vets, builds and links (nothing ran on a GPU)"
