#!/usr/bin/env bash
# Everything the memory needs from a GPU machine, in one call: kernel parity tests, the CPU
# suite as a sanity check, the benchmark (kernel vs reference) and the read-kernel tuning table.
# Logs go to $OUT (the device tool's output folder) or ./out.
#   bash kernels/gpu_check.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}
mkdir -p "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import torch, triton, numpy; print('torch', torch.__version__, 'triton',
triton.__version__, 'numpy', numpy.__version__, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/env.log"
echo "== kernel parity" | tee "$OUT/parity.log"
python3 -m pytest -q -s -p no:cacheprovider test/test_memory_kernels.py 2>&1 | tee -a "$OUT/parity.log"
echo "== CPU suite on the device machine" | tee -a "$OUT/parity.log"
python3 -m pytest -q -p no:cacheprovider test/test_memory.py 2>&1 | tail -3 | tee -a "$OUT/parity.log"
echo "== bench" | tee "$OUT/bench.log"
python3 -m mirage_ros.bench.memory --section timing --device cuda --voxels 1000000 --views 512 \
  --write-frames 64 2>&1 | tee -a "$OUT/bench.log"
echo "== tune" | tee "$OUT/tune.log"
python3 -m kernels.tune_read 2>&1 | tee -a "$OUT/tune.log"
