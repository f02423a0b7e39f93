#!/usr/bin/env bash
# Installs the ONNX Runtime shared library (CPU provider) into .deps/onnxruntime/
# from the npm registry's onnxruntime-node package, at a version whose C API
# matches github.com/yalue/onnxruntime_go v1.27.0 (the 1.24 C API), and checks
# its sha256. Idempotent: does nothing when the right file is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
ORT_VERSION=1.24.3
ORT_SHA256=92ba8e44d31b80a34f5e805076a044122c3be1fffe0d88ed790de7267b0b2682
dest=.deps/onnxruntime
lib=$dest/libonnxruntime.so.1
if [ -f "$lib" ] && echo "$ORT_SHA256  $lib" | sha256sum -c --quiet - 2>/dev/null; then
  exit 0
fi
command -v npm >/dev/null || { echo "deps: npm is needed to fetch onnxruntime-node (apt-get install npm)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "deps: fetching onnxruntime-node@$ORT_VERSION" >&2
(cd "$tmp" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null)
tar -xzf "$tmp/onnxruntime-node-$ORT_VERSION.tgz" -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
got=$(sha256sum "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" | cut -d' ' -f1)
if [ "$got" != "$ORT_SHA256" ]; then
  echo "deps: libonnxruntime.so.1 sha256 mismatch: got $got, want $ORT_SHA256" >&2
  exit 1
fi
mkdir -p "$dest"
mv "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$lib"
ln -sf libonnxruntime.so.1 "$dest/libonnxruntime.so"
echo "deps: installed $lib (onnxruntime $ORT_VERSION)" >&2
