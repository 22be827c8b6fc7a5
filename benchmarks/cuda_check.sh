#!/usr/bin/env bash
# One-shot check of reslab's CUDA paths on a GPU machine (no network, no pip: the repo's src/ on PYTHONPATH).
#
#   OUT=/some/empty/dir bash benchmarks/cuda_check.sh     # on the GPU machine (Fashion-MNIST's 4 .gz in .fmnist/)
#   CUDA_CHECK_DRY=1 bash benchmarks/cuda_check.sh        # here: the same logic on the CPU, tiny sizes
#
# Order, and why: the benchmarks (c) time reslab against a baseline in one process; a neighbour on the GPU
# would hit the two sides unequally (the baseline train step is CPU-bound, reslab's is GPU-bound), so they
# run first, alone. Then the time-to-accuracy runs (d) start in the background, in parallel, and the tests
# (b) run beside them: the tests check correctness only, and the neighbours can only make the TTA wall
# times longer, so those are upper bounds (the log says so). Every step has its own timeout, capped so the
# whole script ends within DEADLINE_S; a failed step is logged and the script goes on.
#
# Expected wall time on an H100 (16 cores): a 10-20 s; c 60-90 s each (cold inductor compile); then
# b tests_cuda 60-150 s, suite 60-150 s, beside d (each preset at most 330 s); about 8 min in all.
#
# Files in $OUT (8 at most come back): cuda_check.log (every command, its status and time, the environment,
# benchmark reports, the tails of the test logs, the TTA summary), tests_cuda.log, tests_suite.log,
# bench_infer_resnet50_b16.json, bench_train_resnet20_b128.json, bench_infer_resnet50_b256.json (only if
# time is left at the end), tta.jsonl (one row per preset), tta.log (the TTA runs' output, prefixed).
set -uo pipefail # no -e: a failing step is information, not the end

PRESETS95=${PRESETS95:-"fast93s wide95 wide95m wide95n"} # time_to_accuracy.py presets run in parallel in step d
TTA_TARGET=0.95
TTA_LIMIT_S=330

cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DRY=${CUDA_CHECK_DRY:-0}
OUT=${OUT:-$(mktemp -d /tmp/cuda_check.XXXXXX)}
mkdir -p "$OUT"

if [[ $DRY == 1 ]]; then
  DEADLINE_S=${DEADLINE_S:-300}
  DEV=cpu
  BENCH_R50=(--model resnet8 --image-size 16 --iters 2 --warmup 1 --no-compile --threads 1)
  BENCH_R20=(--model resnet8 --image-size 16 --iters 2 --warmup 1 --no-compile --threads 1)
  BENCH_ITERS=()
  TTA_DATA=digits
  TTA_EXTRA=(--epochs 1 --threads 1)
  SUITE=(tests/test_summary.py)
else
  DEADLINE_S=${DEADLINE_S:-540}
  DEV=cuda
  BENCH_R50=(--model resnet50)
  BENCH_R20=(--model resnet20)
  BENCH_ITERS=(--iters 50 --warmup 5) # a GPU step takes milliseconds: more iterations, less noise
  TTA_DATA="fashion-mnist:$PWD/.fmnist"
  TTA_EXTRA=()
  SUITE=(tests --ignore tests/test_cuda.py)
fi

START=$SECONDS
RESULTS=()
say() { printf '[%4d s] %s\n' "$((SECONDS - START))" "$*"; }
left() { echo $((DEADLINE_S - (SECONDS - START))); }
cap() { # the step's own limit, or what is left of the deadline (less 10 s for the summary)
  local want=$1 room=$(($(left) - 10))
  ((room < want)) && want=$room
  echo "$want"
}

# run_step NAME LIMIT_S LOG CMD...: CMD under `timeout`; its output to LOG (then its tail here), or here if LOG is -.
run_step() {
  local name=$1 limit log=$3 t0=$SECONDS rc
  limit=$(cap "$2")
  shift 3
  if ((limit < 15)); then
    say "SKIP $name: $(left) s left of the $DEADLINE_S s budget"
    RESULTS+=("$name: skipped (no time left)")
    return
  fi
  local shown=() arg
  for arg in "$@"; do [[ $arg == *$'\n'* ]] && shown+=("'<script>'") || shown+=("$arg"); done
  say "+ ${shown[*]} (timeout ${limit}s, output -> ${log/#-/here})"
  if [[ $log == - ]]; then
    timeout -k 10 "$limit" "$@" 2>&1
    rc=$?
  else
    timeout -k 10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    echo "--- last lines of $log:"
    tail -n 15 "$log"
  fi
  local note=""
  ((rc == 124 || rc == 137)) && note=" (TIMED OUT)"
  say "= $name: exit status $rc$note after $((SECONDS - t0)) s"
  RESULTS+=("$name: exit $rc$note, $((SECONDS - t0)) s")
}

ENV_PY='
import os, platform, sys
import torch
print("python", platform.python_version(), sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("cuda available", torch.cuda.is_available(), "devices", torch.cuda.device_count(), "cpus", os.cpu_count())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", torch.cuda.get_device_name(), "capability", torch.cuda.get_device_capability(),
          "memory GiB", round(p.total_memory / 2**30, 1), "SMs", p.multi_processor_count)
    print("bf16 supported", torch.cuda.is_bf16_supported())
import torch.distributed as dist
print("nccl available", dist.is_nccl_available(), "gloo available", dist.is_gloo_available())
print("TF32 defaults: cudnn.allow_tf32", torch.backends.cudnn.allow_tf32,
      "cuda.matmul.allow_tf32", torch.backends.cuda.matmul.allow_tf32)
for name in ("torchvision", "triton", "onnx", "onnxruntime", "sklearn", "rich", "matplotlib", "xdist",
             "pytest_timeout"):
    try:
        module = __import__(name)
        print(name, getattr(module, "__version__", "?"))
    except Exception as exc:
        print(name, "MISSING", type(exc).__name__, exc)
import reslab
print("reslab", reslab.__version__, "from", reslab.__file__)
'

main() {
  say "cuda_check.sh: dry=$DRY device=$DEV deadline=${DEADLINE_S}s OUT=$OUT presets95='$PRESETS95'"
  say "host $(hostname), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), git $(git rev-parse --short HEAD 2>/dev/null)"

  # -- a: the machine -------------------------------------------------------------------------------
  if [[ $DRY != 1 ]]; then
    run_step nvidia-smi 30 - nvidia-smi
  fi
  run_step versions 60 - "$PY" -c "$ENV_PY"
  ls -l .fmnist 2>&1 | sed 's/^/  .fmnist: /'

  # -- c: speed, alone on the GPU -------------------------------------------------------------------
  run_step bench-infer-resnet50-b16 90 - "$PY" -m reslab benchmark "${BENCH_R50[@]}" --mode infer \
    --batch-size 16 --device "$DEV" "${BENCH_ITERS[@]}" --json --save "$OUT/bench_infer_resnet50_b16.json"
  run_step bench-train-resnet20-b128 90 - "$PY" -m reslab benchmark "${BENCH_R20[@]}" --mode train \
    --batch-size 128 --device "$DEV" "${BENCH_ITERS[@]}" --json --save "$OUT/bench_train_resnet20_b128.json"

  # -- d: time to accuracy, in the background, in parallel ------------------------------------------
  local data=$TTA_DATA tta_pids=() tta_flags=()
  if [[ $DRY != 1 ]] && ! compgen -G ".fmnist/t10k-images*" >/dev/null; then
    if [[ -d /usr/share/datasets/fashion-mnist ]]; then
      data=fashion-mnist
    else
      data=""
      say "SKIP time to accuracy: no .fmnist/ (copy /usr/share/datasets/fashion-mnist/*.gz there and carry it)"
      RESULTS+=("tta: skipped (no Fashion-MNIST)")
    fi
  fi
  # Run directories outside the checkout; an unknown preset is dropped here rather than failing later.
  tta_flags=(--device "$DEV" --runs "$(mktemp -d /tmp/tta-runs.XXXXXX)")
  local known presets=()
  known=$("$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); import time_to_accuracy as t; print(*t.PRESETS)")
  for preset in $PRESETS95; do
    if [[ " $known " == *" $preset "* ]]; then presets+=("$preset"); else say "SKIP unknown preset $preset (known: $known)"; fi
  done
  if [[ -n $data && ${#presets[@]} -gt 0 ]]; then
    local tta_limit
    tta_limit=$(cap "$TTA_LIMIT_S")
    say "TTA runs share the GPU with each other and with the tests below: their wall times are upper bounds"
    for preset in "${presets[@]}"; do
      say "+ [background] timeout ${tta_limit}s $PY benchmarks/time_to_accuracy.py --preset $preset" \
        "${tta_flags[*]} --target $TTA_TARGET --data $data --out $OUT/tta.jsonl ${TTA_EXTRA[*]} -> tta.log"
      (
        timeout -k 10 "$tta_limit" "$PY" benchmarks/time_to_accuracy.py --preset "$preset" "${tta_flags[@]}" \
          --target "$TTA_TARGET" --data "$data" --out "$OUT/tta.jsonl" "${TTA_EXTRA[@]}" 2>&1 |
          sed -u "s/^/[$preset] /" >>"$OUT/tta.log"
        echo "[$preset] exit status ${PIPESTATUS[0]} after $((SECONDS - START)) s of the script" >>"$OUT/tta.log"
      ) &
      tta_pids+=($!)
    done
  fi

  # -- b: correctness on CUDA, then the whole suite on this torch --------------------------------------
  # -v: a line per test as it ends, so a run stopped by its timeout still says which tests passed.
  local cuda_flags=() suite_flags=()
  "$PY" -c "import pytest_timeout" 2>/dev/null && cuda_flags+=(--timeout 120) && suite_flags+=(--timeout 100)
  "$PY" -c "import xdist" 2>/dev/null && suite_flags+=(-n 6)
  run_step tests-cuda 180 "$OUT/tests_cuda.log" "$PY" -m pytest -v -p no:cacheprovider -rfEs --durations=0 \
    "${cuda_flags[@]}" tests/test_cuda.py
  [[ $DRY != 1 ]] && nvidia-smi --query-gpu=utilization.gpu,memory.used,memory.total --format=csv 2>&1 |
    sed 's/^/  gpu now (TTA running): /'
  # 6 workers x 2 threads leave cores for the TTA runs' Python threads.
  run_step tests-suite 150 "$OUT/tests_suite.log" env OMP_NUM_THREADS=2 "$PY" -m pytest -v -p no:cacheprovider \
    -rfEs --durations=15 "${suite_flags[@]}" "${SUITE[@]}"

  if ((${#tta_pids[@]})); then
    say "waiting for the time-to-accuracy runs (${#tta_pids[@]}) ..."
    wait "${tta_pids[@]}"
    say "= tta: done"
    grep -h "exit status" "$OUT/tta.log" | sed 's/^/  /'
    RESULTS+=("tta: $(grep -c "exit status 0 " "$OUT/tta.log") of ${#tta_pids[@]} runs exited 0")
    "$PY" - "$OUT/tta.jsonl" <<'EOF' 2>&1
import json, sys
try:
    rows = [json.loads(line) for line in open(sys.argv[1])]
except OSError:
    rows = []
for r in rows:
    print(f"  TTA {r['preset']}: test accuracy {100 * r['test_accuracy']:.2f}% in {r['wall_seconds']} s "
          f"(target {r['target']}: {'reached' if r['reached_target'] else 'missed'}; epochs "
          f"{len(r['epoch_seconds'])}, epoch seconds {r['epoch_seconds'][:3]}...)")
print(f"  {len(rows)} TTA rows")
EOF
  fi

  # -- c2: throughput at a large batch, only if time is left and the GPU is free again ----------------
  if (($(left) >= 110)); then
    run_step bench-infer-resnet50-b256 100 - "$PY" -m reslab benchmark "${BENCH_R50[@]}" --mode infer \
      --batch-size 256 --device "$DEV" "${BENCH_ITERS[@]}" --json --save "$OUT/bench_infer_resnet50_b256.json"
  else
    RESULTS+=("bench-infer-resnet50-b256: skipped ($(left) s left)")
  fi

  say "summary:"
  printf '  %s\n' "${RESULTS[@]}"
  say "files in $OUT: $(find "$OUT" -type f | wc -l) (8 at most come back)"
  ls -l "$OUT" | sed 's/^/  /'
}

main 2>&1 | tee "$OUT/cuda_check.log"
