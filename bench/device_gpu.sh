#!/usr/bin/env bash
# Issue 20's GPU checks in one run on a device machine (CUDA GPU, no registry); BENCHMARKS.md
# "Session 9" and "Session 10" have the results (env: EXPORT, BUDGET_S, CUDA_BENCH_S,
# TRACKS, CPU_TRACKS, MODES, VARIANTS). bench/device_carry.py makes the carried files:
#   /tmp/parts/site.part-* + .devcarry/p2/site.part-*  onnxruntime-gpu and insight's missing
#                         deps, one tar.xz split in two (a call carries 64 MiB at most)
#   .devcarry/p2/gpt2.tiktoken   RoBERTa's BPE for the full-size source
#   .devcarry/p2/model/          skeleton towers (bench/onnx_skeleton.py) if the export fails
set -u
OUT=${OUT:-/tmp/out}
END=$(( $(date +%s) + ${BUDGET_S:-540} ))
left() { local l=$(( END - $(date +%s) )); echo $(( l > 10 ? l : 10 )); }  # timeout 0: none
mkdir -p "$OUT" /tmp/site
exec > >(tee "$OUT/log.txt") 2>&1
C=.devcarry/p2
cat /tmp/parts/site.part-* $C/site.part-* | python3 -c "import sys, tarfile
tarfile.open(fileobj=sys.stdin.buffer, mode='r|xz').extractall('/tmp/site', filter='tar')" || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
NV=$(python3 -c "import site; print(site.getsitepackages()[0])")/nvidia
LD_LIBRARY_PATH=$(find "$NV" -name 'lib*.so*' -printf '%h\n' | sort -u | paste -sd:)
export LD_LIBRARY_PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
lscpu | grep -E 'Model name|^CPU\(s\)|Flags' | cut -c1-300
python3 -c "import onnxruntime as o; print(o.__version__, o.get_available_providers())"
W=/tmp/insight-cuda
mkdir -p $W/gpt2 && cp $C/gpt2.tiktoken $W/gpt2/
rc=1
if [ "${EXPORT:-1}" = 1 ]; then  # the real export (~75 s): parity against torch on the GPU
  timeout 200 python3 bench/cuda.py --work-dir $W --prepare-only; rc=$?
fi
echo "prepare rc=$rc, $(left) s left"
GRAPHS=""
if [ $rc -ne 0 ]; then  # this machine's torch could not export: random weights of our graphs
  mkdir -p $W/onnx
  python3 bench/onnx_skeleton.py fill $C/model/audio_skel.onnx $W/onnx/audio_model.onnx
  python3 bench/onnx_skeleton.py fill $C/model/text_skel.onnx $W/onnx/text_model.onnx
  cp $C/model/*.json $W/onnx/
  python3 -c "import sys; from pathlib import Path; from insight.inference.export import \
quantize_int8 as q; q(Path(sys.argv[1]), Path(sys.argv[2]))" \
    $W/onnx/audio_model.onnx $W/onnx/audio_model_quantized.onnx  # the CPU scans' int8 tower
  GRAPHS="--graphs $W/onnx"
fi
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -lms 500 \
  > "$OUT/gpu_util.csv" &
SCAN_S=$(( $(left) - ${CUDA_BENCH_S:-100} )); [ $SCAN_S -lt 10 ] && SCAN_S=10
V=(); for v in ${VARIANTS:-}; do V+=(--variant "$v"); done  # e.g. "gpu:full:threads=1"
timeout $SCAN_S python3 bench/cuda_scan.py --model $W/onnx --modes "${MODES-full,sampled}" \
  --tracks "${TRACKS:-1000}" --distinct 32 --cpu-tracks "${CPU_TRACKS:-64}" "${V[@]}"
echo "scan done, $(left) s left"
[ "${CUDA_BENCH_S:-100}" -gt 0 ] && timeout $(left) python3 bench/cuda.py --work-dir $W --reps 5 $GRAPHS
echo "all done, $(left) s left"
