# anomalynode: the command-line contract of shared/DESIGN.md.
GO       ?= go
BIN      := bin/anomalynode
ORT_LIB  := $(CURDIR)/.deps/onnxruntime/libonnxruntime.so.1
export ONNXRUNTIME_LIB ?= $(ORT_LIB)
export ANOMALYNODE_BIN := $(CURDIR)/$(BIN)
TEST_TIMEOUT ?= 30m
FUZZTIME ?= 5s

.PHONY: all deps build test unit fuzz bench demo check-cuda gpu-bundle gpu-check e2e-viewer e2e-console clean

all: build

## deps: install the ONNX Runtime library (pinned, sha256-checked) into .deps/
deps:
	bash scripts/deps.sh

## build: bin/anomalynode
build:
	$(GO) build -o $(BIN) ./cmd/anomalynode

## test: every test (what CI runs): unit + integration with real peers, then short fuzzing
test: deps build unit fuzz

unit:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

## fuzz: run every native fuzz target for FUZZTIME
fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

## bench: run the benchmarks and print one table
bench: deps build
	bash scripts/bench.sh

## demo: the main job on the embedded default (configs/demo.yaml); outputs under .demo/
demo: deps build
	bash scripts/demo.sh

## check-cuda: install CUDA headers once, vet and build the cuda-tagged code
check-cuda:
	bash scripts/check-cuda.sh

## gpu-bundle: build the cuda-tagged test binary into .gpu/ for a GPU machine without Go
gpu-bundle:
	bash scripts/gpu-bundle.sh

## gpu-check: on a machine with an NVIDIA GPU: GPU vs CPU results and timings
gpu-check:
	bash scripts/gpu-check.sh

## e2e-viewer: OHIF in headless Chromium shows our SEG overlay
e2e-viewer: deps build
	bash test/e2e/viewer/run.sh

## e2e-console: the IT staff's console in headless Chromium (live Overview, rule tester, dead-letter replay)
e2e-console: deps build
	bash test/e2e/console/run.sh

clean:
	rm -rf bin .demo
