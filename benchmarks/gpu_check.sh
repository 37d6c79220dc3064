#!/usr/bin/env bash
# Every GPU check of the training / benchmark work, as ONE command for a lent GPU machine
# (run from the repository root; about 4-6 minutes on an H100 / H200, start-up not counted):
#
#   bash benchmarks/gpu_check.sh          # logs and JSON under $OUT (or /tmp/gpu_check)
#
# 1. benchmarks/gpu_train_bench.py at the paper's NUS-WIDE setting (TResNet-M, batch 192,
#    224 px, M = 7, d = 300, C = 925, bf16, channels_last): SDL vs BCE vs forward, synthetic
#    tensors then the generated JPEG cache through the DataLoader;
# 2. benchmarks/bench_loss.py --device cuda (the loss vs the per-image loop; ">= 50x" target);
# 3. the CUDA tests (pytest -m gpu): sdl.training.loop's CUDA loop with resume, the bench on CUDA;
# 4. benchmarks/bench_evaluation.py --device cuda (scores on the GPU, metrics on the CPU).
# Each step has its own time limit, so one that hangs cannot eat the others' time; the last
# lines printed are the summary tables.
set -uo pipefail
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee "$OUT/nvidia_smi.txt"
"$PY" -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'bf16', torch.cuda.is_bf16_supported())" 2>&1 | tee "$OUT/versions.txt"
nproc | tee -a "$OUT/versions.txt"
df -h /dev/shm 2>&1 | tee -a "$OUT/versions.txt"   # loader workers pass batches through shared memory

timeout 330 "$PY" benchmarks/gpu_train_bench.py --json "$OUT/gpu_train_bench.json" 2>&1 | tee "$OUT/gpu_train_bench.log"
echo "gpu_train_bench exit: $?"
timeout 120 "$PY" benchmarks/bench_loss.py --device cuda --repeats 7 2>&1 | tee "$OUT/bench_loss_cuda.log"
echo "bench_loss exit: $?"
timeout 150 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_distributed.py tests/test_benchmarks_smoke.py 2>&1 | tee "$OUT/pytest_gpu.log"
echo "pytest -m gpu exit: $?"
timeout 180 "$PY" benchmarks/bench_evaluation.py --device cuda 2>&1 | tee "$OUT/bench_evaluation_cuda.log"
echo "bench_evaluation exit: $?"

echo; echo "== summary =="
grep -A12 "^| data | measured" "$OUT/gpu_train_bench.log"
grep -E "^- (SDL|real)" "$OUT/gpu_train_bench.log"
grep -E "^\| (Open Images|NUS-WIDE) \|" "$OUT/bench_loss_cuda.log"
tail -1 "$OUT/pytest_gpu.log"
