#!/usr/bin/env bash
# Head init at short budgets (issue 13's open question), on resnet18-imagenet, tasks count and distance: SGD linear
# (30 epochs) with the reference's head and with --head-init trunc-normal, and vpt-pad p = 5 (4 epochs, the recipe of
# bench/resnet18-mini-suite.sh) with trunc-normal. Trained on train800, epoch picked on val200, tested on test.
# Writes eval JSON and metrics to $OUT (default docs/results/resnet18-mini-suite/head-init/).
#
#   DATA=data/mini bench/resnet18-head-init.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/mini}
OUT=${OUT:-docs/results/resnet18-mini-suite/head-init}
LOCK=${LOCK:-/tmp/vpt-heavy.lock}
export DATA OUT
mkdir -p "$OUT"
flock "$LOCK" bash -euo pipefail -c '
  source bench/common.sh
  VPT=$(build_vpt)
  run() { train_and_test "$OUT" "$@"; } # name, task, then vpt train arguments
  for t in count distance; do
    for h in trunc-normal reference; do
      run "linear-$t-$h" "$t" --method linear --head-init "$h" --lr 0.25 --batch-size 64 --epochs 30 --warmup-epochs 3 --weight-decay 0.0001
    done
    run "pad-$t" "$t" --method vpt-pad --pad-init xavier --prompts 5 --head-init trunc-normal --lr 0.25 --batch-size 16 --epochs 4 --warmup-epochs 0 --weight-decay 0.0001
  done
  log "done"
'
