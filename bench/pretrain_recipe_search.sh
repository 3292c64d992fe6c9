#!/usr/bin/env bash
# Recipe search for the bundled encoder: each candidate trains on the full schedule of
# configs/pretrain/corpus.yaml for BUDGET seconds of wall clock (interrupted, checkpointed),
# then is exported and evaluated (linear probe and kNN against its random twin) on the
# labelled tasks that `pathssl make-dev-tasks` builds. Quality per CPU-hour decides.
#   RUNS=/work/runs TASKS=/work/tasks BUDGET=240 bench/pretrain_recipe_search.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
RUNS=${RUNS:-/work/runs}
TASKS=${TASKS:-/work/tasks}
BUDGET=${BUDGET:-240}
PATHSSL=${PATHSSL:-.venv/bin/pathssl}
VIT=(--set architecture=vit_tiny_patch16_224 --set 'timm_kwargs={img_size: 112, dynamic_img_size: true}')

run() {
  local name=$1
  shift
  timeout -s INT "$BUDGET" "$PATHSSL" pretrain --config configs/pretrain/corpus.yaml \
    --set "output=$RUNS/$name" "$@" >"$RUNS/$name.log" 2>&1
  "$PATHSSL" export "$RUNS/$name/checkpoints/last.pt" --output "$RUNS/$name/bundle" >>"$RUNS/$name.log" 2>&1
  "$PATHSSL" evaluate "$TASKS/monuseg-organ" "$TASKS/monuseg-organ-pooled" "$TASKS/crc-val-he-32" \
    --model "$RUNS/$name/bundle" --output "$RUNS/$name/eval.json" >"$RUNS/$name.eval" 2>/dev/null
}

run moco-resnet18
run simclr-resnet18 --set method=simclr --set 'method_kwargs={proj_dim: 128, hidden_dim: 512, temperature: 0.1}'
run moco-vittiny "${VIT[@]}" --set lr=0.001 --set weight_decay=0.05 --set weight_decay_end=0.05
