#!/usr/bin/env bash
# Every GPU check of the training / data / benchmark work, as ONE command for a lent GPU
# machine (run from the repository root; about 5 minutes of work on an H200, start-up not
# counted; each step has its own time limit, 570 s in all, so one that hangs cannot eat the
# others' time):
#
#   bash benchmarks/gpu_check.sh          # logs and JSON under $OUT (or /tmp/gpu_check): 8 files
#
# 1. benchmarks/gpu_train_bench.py at the paper's NUS-WIDE setting (TResNet-M, batch 192,
#    224 px, M = 7, d = 300, C = 925, bf16, channels_last): SDL vs BCE vs forward on synthetic
#    tensors (target SDL/BCE >= 0.95), the Epsilon step (ViT-B/16, batch 96) beside it where the
#    Epsilon family is in the checkout, then the real data paths against synthetic inputs
#    (target >= 0.9): data_path jpeg (PIL decode + augmentation in 15 workers) and data_path
#    uint8_cache (the decoded cache, augmentation on uint8 tensors, normalisation on the GPU);
# 2. benchmarks/gpu_decode_check.py: batched nvJPEG (torchvision.io.decode_jpeg(device="cuda"))
#    vs PIL, pixel differences (decoder tolerance) and images/s; Normalizer on CUDA = CPU;
# 3. benchmarks/bench_loss.py --device cuda: the loss vs the released per-image algorithm at
#    the Open Images and NUS-WIDE sizes (target >= 50x, same value to 1e-5);
# 4. the CUDA tests (pytest -m gpu): the CUDA training loop with resume, the cached data path
#    on CUDA, the benchmarks at tiny sizes;
# 5. benchmarks/bench_evaluation.py --device cuda: evaluation throughput at 100k x 1,006.
# The last lines printed are the summary.
set -uo pipefail
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  "$PY" -c "import torch, timm, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__, 'bf16', torch.cuda.is_bf16_supported())" 2>&1
  echo "cores: $(nproc)"
  df -h /dev/shm 2>&1   # loader workers pass batches through shared memory
} | tee "$OUT/machine.txt"

timeout 220 "$PY" benchmarks/gpu_train_bench.py --json "$OUT/gpu_train_bench.json" 2>&1 | tee "$OUT/gpu_train_bench.log"
echo "gpu_train_bench exit: $?"
timeout 60 "$PY" benchmarks/gpu_decode_check.py --json "$OUT/gpu_decode_check.json" 2>&1 | tee "$OUT/gpu_decode_check.log"
echo "gpu_decode_check exit: $?"
timeout 90 "$PY" benchmarks/bench_loss.py --device cuda --repeats 7 2>&1 | tee "$OUT/bench_loss_cuda.log"
echo "bench_loss exit: $?"
timeout 90 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/training/test_distributed.py tests/training/test_data_path.py \
  tests/test_benchmarks_smoke.py 2>&1 | tee "$OUT/pytest_gpu.log"
echo "pytest -m gpu exit: $?"
timeout 110 "$PY" benchmarks/bench_evaluation.py --device cuda 2>&1 | tee "$OUT/bench_evaluation_cuda.log"
echo "bench_evaluation exit: $?"

echo; echo "== summary =="
grep -A16 "^| data | measured" "$OUT/gpu_train_bench.log"
grep -E "^- (SDL|real|Epsilon)" "$OUT/gpu_train_bench.log"
grep -E "^(\| (nvjpeg|torchvision)|- )" "$OUT/gpu_decode_check.log"
grep -E "^\| (Open Images|NUS-WIDE) \|" "$OUT/bench_loss_cuda.log"
tail -3 "$OUT/bench_evaluation_cuda.log"
tail -1 "$OUT/pytest_gpu.log"
