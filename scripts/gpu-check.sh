#!/usr/bin/env bash
# gpu-check.sh: prove the cuda/ package on a machine with an NVIDIA GPU.
#
# 1. builds the cuda-tagged test binary of ./cuda, or takes the one that
#    scripts/gpu-bundle.sh built elsewhere (.gpu/cuda.test, used when this
#    machine has no Go, or named by GPU_CHECK_BINARY);
# 2. compares GPU and CPU results on random (clustered) inputs: DPMM scoring
#    and the statistics of one EM step, plus the means after a whole step,
#    at small sizes and at N=12288, K=500, D=384; norm-wise relative error
#    must be < 1e-4 (fp32);
# 3. checks the GPU DINOv2 embedder (cuda.Embedder) against ONNX Runtime on
#    the CPU on the same ONNX files, fp32, tf32 and bf16: mkvit tiny and
#    vits14 graphs, the committed tiny Hugging Face exports, and dinov2-small
#    sized Hugging Face dynamo exports made here by scripts/hf-export.py
#    (needs python3 with torch, transformers and onnxscript); ONNX Runtime
#    comes from $ONNXRUNTIME_LIB, .deps/ or python's onnxruntime wheel;
# 4. benchmarks scoring and one EM step at N=12288, K=500, D=384 against the
#    CPU code in the same run, and the embedder at 448x448 per precision and
#    batch, and prints the tables;
# 5. with a prebuilt cuda-tagged anomalynode (.gpu/anomalynode), times
#    `anomalynode score` on a 500-slice series on the GPU against ONNX
#    Runtime on the CPU (scripts/gpu-score.sh; GPU_CHECK_NO_SCORE=1 skips it).
#
# Without an NVIDIA device it prints that nothing was checked and exits 0; any
# other failure (no toolkit, build error, mismatch, a test that skipped) exits
# non-zero. Designed for a few minutes of device time: one build, one test run,
# two benchmarks. Needs the driver and cuBLAS on the machine, plus Go and the
# CUDA headers unless the binary is prebuilt; NVRTC is not needed (the kernels
# are embedded as PTX).
#
# Environment:
#   GPU_CHECK_LOG   also write the full log here (default: $OUT/gpu-check.log when $OUT is set)
#   CUDA_HOME       toolkit root when it is not /usr or /usr/local/cuda
#   GPU_CHECK_BINARY  a prebuilt cuda-tagged test binary (scripts/gpu-bundle.sh)
#   GPU_CHECK_BENCH   benchmarks to run (regexp, default Score|Step|Embed)
#   GPU_CHECK_NO_HF=1     skip the dinov2-small sized Hugging Face exports
#   GPU_CHECK_NO_SCORE=1  skip scripts/gpu-score.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'gpu-check: %s\n' "$*" >&2; }

# --- Is there a device at all? ------------------------------------------------
gpus=""
if command -v nvidia-smi >/dev/null 2>&1; then
	gpus=$(nvidia-smi -L 2>/dev/null | grep -E '^GPU [0-9]+' || true)
fi
if [[ -z $gpus ]] && ! ls /dev/nvidia[0-9]* >/dev/null 2>&1; then
	echo "gpu-check: NOT RUN - no NVIDIA device on this machine (nvidia-smi lists no GPU and there is no /dev/nvidia0)."
	echo "gpu-check: nothing was checked; run 'make gpu-check' on a machine with an NVIDIA GPU and driver."
	exit 0
fi
log "device(s): ${gpus:-/dev/nvidia* present, nvidia-smi unavailable}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
logf=${GPU_CHECK_LOG:-${OUT:+$OUT/gpu-check.log}}
logf=$(realpath -m "${logf:-/tmp/anomalynode-gpu-check.log}")
: >"$logf"

# libdirs lists the folders that may hold the CUDA libraries: the toolkit's,
# the system's, and those of NVIDIA's Python wheels (nvidia-cublas-*).
libdirs() {
	local r
	for r in "${CUDA_HOME:-}" /usr/local/cuda /usr; do
		[[ -n $r ]] || continue
		printf '%s\n' "$r/lib64" "$r/targets/x86_64-linux/lib" "$r/lib/x86_64-linux-gnu" "$r/lib"
	done
	ldconfig -p 2>/dev/null | awk '/libcublas\.so/ {sub(/\/[^\/]*$/, "", $NF); print $NF}'
	if command -v python3 >/dev/null; then
		python3 - 2>/dev/null <<'PY' || true
import glob, site, sys
for d in site.getsitepackages() + [site.getusersitepackages()] + sys.path:
    for lib in glob.glob(d + "/nvidia/cu*/lib"):
        print(lib)
PY
	fi
}

bin=${GPU_CHECK_BINARY:-}
if [[ -z $bin && -x .gpu/cuda.test ]] && ! command -v go >/dev/null; then
	bin=.gpu/cuda.test
fi
if [[ -n $bin ]]; then
	# --- Prebuilt (scripts/gpu-bundle.sh): no Go needed, only the libraries --------
	bin=$(realpath "$bin")
	[[ -x $bin ]] || { log "FAILED: $bin is not an executable"; exit 1; }
	log "prebuilt test binary $bin ($(cat "$(dirname "$bin")/MANIFEST" 2>/dev/null | tr '\n' ' '))"
	# The bundle names the sonames it was linked with; a shim folder maps each
	# one the loader cannot find onto the version this machine has (its symbols
	# are unversioned, so any cuBLAS with the same entry points will do).
	mkdir -p "$tmp/lib"
	export LD_LIBRARY_PATH="$tmp/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
	for soname in $(ldd "$bin" | awk '/not found/ {print $1}'); do
		base=${soname%%.so*}
		found=""
		while read -r d; do
			[[ -d $d ]] || continue
			found=$(ls "$d/$soname" 2>/dev/null || ls -v "$d/$base".so.[0-9]* 2>/dev/null | tail -1 || true)
			if [[ -n $found ]]; then break; fi
		done < <(libdirs)
		if [[ -z $found ]]; then
			log "FAILED: $soname not found on this machine (searched the toolkit, ldconfig and Python's nvidia wheels)"
			exit 1
		fi
		ln -sf "$found" "$tmp/lib/$soname"
		# Its own dependencies (libcublasLt) sit beside it.
		export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$(dirname "$found")"
		log "$soname -> $found"
	done
	if ldd "$bin" | grep -q 'not found'; then
		log "FAILED: libraries still missing:"
		ldd "$bin" | grep 'not found' >&2
		exit 1
	fi
	cp "$bin" "$tmp/cuda.test"
else
	# --- Toolkit: headers to compile, cuBLAS to link and run -------------------------
	inc="" lib=""
	for r in "${CUDA_HOME:-}" /usr/local/cuda /usr; do
		[[ -n $r ]] || continue
		if [[ -z $inc && -f $r/include/cuda.h && -f $r/include/cublas_v2.h ]]; then inc=$r/include; fi
	done
	while read -r l; do
		if [[ -z $lib ]] && ls "$l"/libcublas.so* >/dev/null 2>&1; then lib=$l; fi
	done < <(libdirs)
	if [[ -z $inc || -z $lib ]]; then
		log "FAILED: an NVIDIA device is present but the CUDA toolkit is not (need cuda.h, cublas_v2.h and libcublas)."
		log "install it (Debian: make check-cuda, which needs network; or NVIDIA's toolkit under /usr/local/cuda, or set CUDA_HOME),"
		log "or build the test binary elsewhere with 'make gpu-bundle' and bring .gpu/ here"
		exit 1
	fi
	command -v go >/dev/null || { log "FAILED: go not found; build elsewhere with 'make gpu-bundle' and bring .gpu/ here"; exit 1; }
	ldflags="-L$lib"
	# libcuda.so (unversioned) may exist only as the toolkit's link stub; the
	# driver's libcuda.so.1 is what runs.
	for s in "$lib/stubs" "${lib%/lib64}/lib64/stubs"; do
		if [[ -d $s ]]; then ldflags="$ldflags -L$s"; fi
	done
	export CGO_ENABLED=1
	export CGO_CFLAGS="${CGO_CFLAGS:-} -I$inc"
	export CGO_LDFLAGS="${CGO_LDFLAGS:-} $ldflags"
	export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

	# --- Build ----------------------------------------------------------------------
	t0=$SECONDS
	log "building the cuda-tagged tests (include $inc, lib $lib)"
	go test -c -tags cuda -o "$tmp/cuda.test" ./cuda
	log "built in $((SECONDS - t0)) s"
fi

# --- ONNX Runtime (the embedder's reference) and Hugging Face exports ---------------
if [[ -z ${ONNXRUNTIME_LIB:-} && -f .deps/onnxruntime/libonnxruntime.so.1 ]]; then
	export ONNXRUNTIME_LIB=$PWD/.deps/onnxruntime/libonnxruntime.so.1
fi
if [[ -z ${ONNXRUNTIME_LIB:-} ]] && command -v python3 >/dev/null; then
	ONNXRUNTIME_LIB=$(python3 -c 'import glob, os, onnxruntime; print(sorted(glob.glob(os.path.dirname(onnxruntime.__file__) + "/capi/libonnxruntime.so*"))[0])' 2>/dev/null || true)
	export ONNXRUNTIME_LIB
fi
[[ -n ${ONNXRUNTIME_LIB:-} ]] || { log "FAILED: no ONNX Runtime library (set ONNXRUNTIME_LIB, run make deps, or pip install onnxruntime)"; exit 1; }
log "ONNX Runtime for the reference: $ONNXRUNTIME_LIB"
hf=""
if [[ ${GPU_CHECK_NO_HF:-} != 1 ]]; then
	t0=$SECONDS
	if ! python3 scripts/hf-export.py "$tmp/hf" >"$tmp/hf.txt" 2>&1; then
		tail -n 20 "$tmp/hf.txt" >&2
		log "FAILED: Hugging Face export (python3 with torch, transformers and onnxscript; GPU_CHECK_NO_HF=1 skips it)"
		exit 1
	fi
	hf="$tmp/hf/hf-dinov2-small.onnx,$tmp/hf/hf-dinov2-small-reg4.onnx"
	log "Hugging Face dinov2-small exports made in $((SECONDS - t0)) s"
fi

# --- Compare -------------------------------------------------------------------------
cd cuda
status=0
log "GPU vs CPU (relative error < 1e-4), small sizes and N=12288 K=500 D=384; embedder vs ONNX Runtime"
if ! "$tmp/cuda.test" -test.run 'Available|Matches|Embedder' -test.v -test.count 1 -test.timeout 8m \
	-cuda.full -cuda.require -cuda.onnx="$hf" >"$tmp/compare.txt" 2>&1; then
	status=1
fi
cat "$tmp/compare.txt" >>"$logf"

# --- Benchmark ----------------------------------------------------------------------------
log "benchmarks: scoring and EM at N=12288 K=500 D=384; the embedder at 448x448"
if ! "$tmp/cuda.test" -test.run '^$' -test.bench "${GPU_CHECK_BENCH:-Score|Step|Embed}" -test.benchtime 2s -test.count 1 \
	-test.timeout 8m -cuda.require >"$tmp/bench.txt" 2>&1; then
	status=1
fi
cat "$tmp/bench.txt" >>"$logf"

# --- Report ------------------------------------------------------------------------------
echo
echo "## GPU check ($(date -u +%Y-%m-%dT%H:%MZ))"
echo
grep -E 'device:' "$tmp/compare.txt" | sed 's/^ *[a-z_]*\.go:[0-9]*: /- /' || true
echo
echo "### GPU vs CPU (norm-wise relative error, limit 1e-4)"
echo
grep -E 'relative error' "$tmp/compare.txt" | sed 's/^ *[a-z_]*\.go:[0-9]*: /- /' || true
grep -E '^(--- |FAIL|ok|PASS)' "$tmp/compare.txt" | grep -v '^--- PASS' || true
echo
echo "### Timings, N=12288 K=500 D=384 (CPU median and GPU mean in the same run)"
echo
echo "| operation | CPU ms | GPU ms | speed-up | GPU GFLOP/s |"
echo "|---|---:|---:|---:|---:|"
awk '/^Benchmark(Score|Step)/ {
	name=$1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$/, "", name)
	cpu=gpu=sp=gf="?"
	for (i = 2; i < NF; i++) {
		if ($(i+1) == "cpu-ms") cpu=$i
		if ($(i+1) == "gpu-ms") gpu=$i
		if ($(i+1) == "speedup") sp=$i
		if ($(i+1) == "gpu-GFLOP/s") gf=$i
	}
	op = (name == "Score") ? "DPMM scoring (GEMM + row max)" : "one EM step (E-step, log-sum-exp, statistics; M-step on host)"
	printf "| %s | %s | %s | %sx | %s |\n", op, cpu, gpu, sp, gf
}' "$tmp/bench.txt"
echo
echo "### DINOv2 embedder, ViT-S/14 with 4 registers (mkvit, random weights) at 448x448"
echo
echo "forward: input already on the GPU (what PyTorch figures time); Embed: from host memory through pinned staging to host tokens; EmbedScore: the node's path, tokens scored on the GPU against 500 prototypes, only scores back"
echo
echo "| precision | batch | forward slices/s | Embed slices/s | EmbedScore slices/s | embedder GPU MiB | device used MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|"
awk '/^BenchmarkEmbed\// {
	n = split($1, parts, "/"); prec=parts[2]; sub(/^prec=/, "", prec); batch=parts[3]; sub(/^batch=/, "", batch); sub(/-[0-9]+$/, "", batch)
	if (n > 3) { blk=parts[4]; sub(/^block=/, "", blk); sub(/-[0-9]+$/, "", blk); batch = batch " (attention pass " blk ")" }
	fw=em=es=mib=used="?"
	for (i = 2; i < NF; i++) {
		if ($(i+1) == "slices/s") fw=$i
		if ($(i+1) == "embed-slices/s") em=$i
		if ($(i+1) == "embedscore-slices/s") es=$i
		if ($(i+1) == "gpu-MiB") mib=$i
		if ($(i+1) == "device-used-MiB") used=$i
	}
	printf "| %s | %s | %s | %s | %s | %s | %s |\n", prec, batch, fw, em, es, mib, used
}' "$tmp/bench.txt"
grep -E '^(--- (FAIL|SKIP)|FAIL)' "$tmp/bench.txt" || true
echo
cd ..
if [[ ${GPU_CHECK_NO_SCORE:-} != 1 && -x .gpu/anomalynode ]]; then
	log "anomalynode score end to end (scripts/gpu-score.sh)"
	if ! BIN=.gpu/anomalynode bash scripts/gpu-score.sh 2>>"$logf"; then
		log "gpu-score failed"
		status=1
	fi
fi
echo
if [[ $status -ne 0 ]]; then
	log "FAILED (full log: $logf)"
	tail -n 40 "$tmp/compare.txt" "$tmp/bench.txt" >&2
	exit 1
fi
log "ok (full log: $logf)"
