#!/usr/bin/env bash
# Issue 26's check: end to end against the encoder alone, for the shipped ResNet-18 (112 px)
# and untrained ViT-S/16 and ResNet-50 (224 px), each as a ratio within one run of
# bench/embed_throughput.py. Writes one JSON per run into OUT (default bench-ratios/).
#   bash bench/end_to_end_ratios.sh [OUT]
# Slides: synthetic pyramidal JPEG TIFFs from the real H&E of ../shared/data, made once:
#   2,239 tiles (--width 40000 --height 32000) and 13,838 (--width 100000 --height 80000).
# On a shared machine, run it with nothing else using the CPU: the ratios are within a run,
# but a neighbour that comes and goes moves them.
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
out="${1:-bench-ratios}"
py="${PYTHON:-.venv/bin/python}"
slides="${SLIDES:-$out/slides}"
mkdir -p "$out" "$slides"
[ -f "$slides/syn-40k.tif" ] || "$py" bench/synthetic_slide.py "$slides/syn-40k.tif" --width 40000 --height 32000
[ -f "$slides/syn-100k.tif" ] || "$py" bench/synthetic_slide.py "$slides/syn-100k.tif" --width 100000 --height 80000
for arch in vit_small_patch16_224 resnet50; do
  [ -d "$out/$arch" ] || "$py" -m pathssl.cli init-model --architecture "$arch" --output "$out/$arch" >/dev/null
done
run() {  # name slide model [extra arguments]
  local name="$1" slide="$2" model="$3"
  shift 3
  echo "## $name"
  "$py" bench/embed_throughput.py --slide "$slide" --model "$model" --skip naive reading \
    --json "$out/$name.json" "$@" 2>&1 | grep -v -i warn
}
run resnet18-syn40k "$slides/syn-40k.tif" model --rounds 5
run resnet18-syn40k-4slides "$slides/syn-40k.tif" model --copies 4 --rounds 2
run resnet18-syn100k "$slides/syn-100k.tif" model --rounds 2
run vits16-syn40k "$slides/syn-40k.tif" "$out/vit_small_patch16_224" --rounds 2
run resnet50-syn40k "$slides/syn-40k.tif" "$out/resnet50" --rounds 2
"$py" - "$out" <<'PY'
import json, sys
from pathlib import Path
print(f"{'run':<26}{'encoder alone':>15}{'end to end':>12}{'ratio':>8}{'rounds, median':>16}")
for f in sorted(Path(sys.argv[1]).glob("*.json")):
    r = json.loads(f.read_text())
    enc = (r["encoder_ceiling_before_tiles_per_s"] + r["encoder_ceiling_after_tiles_per_s"]) / 2
    e2e = r["end_to_end_tiles_per_s"]
    rounds = r.get("end_to_end_over_encoder_rounds", [e2e / enc])
    median = r.get("end_to_end_over_encoder_median", e2e / enc)
    print(f"{f.stem:<26}{enc:>15.1f}{e2e:>12.1f}{e2e / enc:>8.2f}{len(rounds):>9}, {median:.2f}")
PY
