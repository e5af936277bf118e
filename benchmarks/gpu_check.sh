#!/usr/bin/env bash
# The GPU check, one prepared script (about 8 minutes on one GPU, most of it spare):
#   1. the CUDA path of the tests in fp16 and bf16 (tests/test_cuda_path.py: editors, statistics, scoring,
#      and the delta apply rule giving the same bits on the GPU as on the CPU);
#   2. ROME and MEMIT timed on a randomly initialised GPT-J-6B (real shapes, fp16, no weights downloaded:
#      TIMING ONLY, labelled as such in its JSON).
# Results go to $OUT (default bench-results/gpu): tests.txt, gptj_random.json, gpu.txt.
#
#   benchmarks/gpu_check.sh            # on a machine with a CUDA GPU and a CUDA build of torch
#   GPU_CHECK_CPU=1 benchmarks/gpu_check.sh   # the CPU-safe parts only: same code at toy size (a dry run)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench-results/gpu}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"

if [[ "${GPU_CHECK_CPU:-0}" == "1" ]]; then
  echo "gpu_check: CPU dry run (GPU_CHECK_CPU=1): the CUDA tests skip; GPT-J's code path at toy size" | tee "$OUT/gpu.txt"
  timeout 600 "$PY" -m pytest -q tests/test_cuda_path.py -rs 2>&1 | tee "$OUT/tests.txt"
  timeout 900 "$PY" benchmarks/gptj_random.py --device cpu --dtype float32 --tiny --repeats 1 --memit-batch 2 \
    --stats-tokens 256 --out "$OUT/gptj_random.json"
  exit 0
fi

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch sees no CUDA device (torch $("$PY" -c 'import torch; print(torch.__version__)')); run it" \
       "where a GPU and a CUDA build of torch are installed, or GPU_CHECK_CPU=1 for the dry run" >&2
  exit 2
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
} | tee "$OUT/gpu.txt"

start=$(date +%s)
# 1. the CUDA path of the tests (fp16 and bf16); a failure is reported but the timing still runs
set +e
timeout 240 "$PY" -m pytest -q tests/test_cuda_path.py -rs 2>&1 | tee "$OUT/tests.txt"
tests_rc=${PIPESTATUS[0]}
set -e
# 2. GPT-J-6B shapes, random weights, fp16: ROME (1 request) and MEMIT (10 requests), 3 timed runs each
timeout 300 "$PY" benchmarks/gptj_random.py --device cuda --dtype float16 --repeats 3 --memit-batch 10 \
  --out "$OUT/gptj_random.json"
echo "gpu_check: done in $(( $(date +%s) - start )) s; tests exit code $tests_rc; results in $OUT" | tee -a "$OUT/gpu.txt"
exit "$tests_rc"
