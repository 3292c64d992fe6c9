#!/usr/bin/env bash
# On a machine with a CUDA GPU: run the GPU tests (pytest -m gpu) and the GPU benchmark, and
# write a short report (default gpu-report.md; or $1). Never part of CI.
#   bash bench/gpu_report.sh [REPORT]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
report="${1:-gpu-report.md}"
py="${PYTHON:-.venv/bin/python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

{
  echo "# pathssl GPU report, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  "$py" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'available', torch.cuda.is_available())"
  echo '```'
  echo
  echo "## GPU tests"
  echo '```'
  "$py" -m pytest -m gpu -q -rA tests/test_gpu.py 2>&1 | tail -25
  echo '```'
  echo
  echo "## GPU benchmark (bench/embed_throughput.py, synthetic 50,000 x 40,000 px slide)"
  "$py" bench/synthetic_slide.py "$work/syn.tif" --width 50000 --height 40000 >/dev/null
  "$py" -m pathssl.cli init-model --architecture vit_small_patch16_224 --output "$work/vits" >/dev/null
  "$py" -m pathssl.cli init-model --architecture vit_large_patch16_224 --output "$work/vitl" >/dev/null
  for model in model "$work/vits" "$work/vitl"; do
    echo "### $(basename "$model")"
    echo '```'
    "$py" bench/embed_throughput.py --device cuda --slide "$work/syn.tif" --model "$model" --batch-size 256 \
      --workers "$(( $(nproc) - 1 ))" 2>&1 | grep -v "it/s" | tail -12
    echo '```'
  done
  echo "### decoding: OpenSlide on the CPU against the compressed-tile path on the GPU"
  echo '```'
  "$py" bench/jpeg_decode.py "$work/syn.tif" 2>&1 | tail -12
  echo '```'
} >"$report" 2>&1
echo "wrote $report"
