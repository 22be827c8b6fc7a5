#!/usr/bin/env bash
# The README's speed figures: inference (resnet50, batch 16) and the training step (resnet20, 32x32,
# batch 128), each baseline-vs-reslab in one process, alternating. Writes benchmarks/results/.
# Usage: bash benchmarks/speed.sh [extra reslab-benchmark flags, e.g. --threads 1]
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results
mkdir -p "$out"
stamp=$(date +%Y%m%dT%H%M%S)
{
  echo "# $(date -Is)  load average: $(cut -d' ' -f1-3 /proc/loadavg)  nproc: $(nproc)  extra flags: $*"
  echo "\$ reslab benchmark --model resnet50 --mode infer --batch-size 16 --iters 16 --warmup 3 $*"
  reslab benchmark --model resnet50 --mode infer --batch-size 16 --iters 16 --warmup 3 \
    --save "$out/infer-resnet50-b16-$stamp.json" "$@"
  echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "\$ reslab benchmark --model resnet20 --mode train --batch-size 128 --iters 24 --warmup 5 $*"
  reslab benchmark --model resnet20 --mode train --batch-size 128 --iters 24 --warmup 5 \
    --save "$out/train-resnet20-b128-$stamp.json" "$@"
  echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg)"
} 2>&1 | grep --line-buffered -v "No CUDA runtime" | tee "$out/speed-$stamp.txt"
