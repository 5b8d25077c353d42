#!/usr/bin/env bash
# One prepared GPU check of the tracker's CuPy backend (issue 5): agreement with numpy (< 0.005 px) and speed.
# Needs only numpy, scipy, xarray, scikit-image and CuPy: run from the repository root, results go to ${OUT:-.}.
set -euo pipefail
export PYTHONPATH=.
out=${OUT:-.}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import cupy; print('cupy', cupy.__version__, cupy.cuda.runtime.getDeviceCount(), 'device(s)')"
timeout "${BENCH_TIMEOUT_S:-420}" python3 bench/track_bench.py --backend cupy --compare-numpy \
    --lines 2048 --samples 4096 --presets peer,shirase --oversampling-paths window,dense --baseline-stride 4 \
    --memory-budget-mb 8192 --workers "$(nproc)" --repeat 5 --cache /tmp/track-bench --json-out "$out/gpu_bench.json"
if python3 -c "import pytest" 2>/dev/null; then
    timeout 180 python3 -m pytest -q -p no:cacheprovider tests/test_tracking_gpu.py
fi
