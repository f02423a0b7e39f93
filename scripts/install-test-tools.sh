#!/usr/bin/env bash
# Installs, on a fresh Debian machine, every program the tests drive as a real
# peer or validator: dcmtk, Orthanc (+ DICOMweb plugin), dicom3tools, the
# mricron brain template used by synth, Chromium for the viewer test, and npm
# (only when no npm is on the PATH: a Node.js build that bundles npm conflicts
# with Debian's npm package). Skips apt when everything is already present.
set -euo pipefail
pkgs=(dcmtk orthanc orthanc-dicomweb dicom3tools mricron-data chromium ca-certificates)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-test-tools: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
