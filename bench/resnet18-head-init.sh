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
  run() { # name, then vpt train arguments
    local name=$1 t=$2; shift 2
    [ -f "$OUT/$name.json" ] && return
    log "$name"
    $VPT train --backbone resnet18-imagenet --data "$DATA/$t/train800.txt" --val "$DATA/$t/val200.txt" --threads 2 --force \
        --out "$OUT/work-$name" "$@" > /dev/null
    $VPT eval --task "$OUT/work-$name/task.vpt" --data "$DATA/$t/test.txt" --threads 2 --json "$OUT/$name.json" --force > /dev/null
    cp "$OUT/work-$name/metrics.jsonl" "$OUT/$name-metrics.jsonl"; rm -rf "$OUT/work-$name"
  }
  for t in count distance; do
    for h in trunc-normal reference; do
      run "linear-$t-$h" "$t" --method linear --head-init "$h" --lr 0.25 --batch-size 64 --epochs 30 --warmup-epochs 3 --weight-decay 0.0001
    done
    run "pad-$t" "$t" --method vpt-pad --prompts 5 --head-init trunc-normal --lr 0.25 --batch-size 16 --epochs 4 --warmup-epochs 0 --weight-decay 0.0001
  done
  log "done"
'
