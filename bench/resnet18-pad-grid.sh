#!/usr/bin/env bash
# VPT-pad's prompt-width grid on resnet18-imagenet (issue 12; paper §4.4 / appendix A: p ∈ {1, 3, 5, 7, 9, 11}): each
# width trained exactly as bench/resnet18-mini-suite.sh trains vpt-pad p = 5 with the trunc-normal head — base lr 0.25,
# batch 16, 4 epochs, no warm-up, on train800, the epoch picked on val200, tested on test — so the width can be chosen
# per task on val200 alone (bench/resnet18_mini_suite_table.py does, and reports that width's test top-1). p = 5 is the
# run in OUT/vpt-pad-trunc-normal/. Writes OUT/vpt-pad-grid/p<P>/<task>.json; widths run widest-apart first.
# EPOCHS other than 4 asks whether the budget limits vpt-pad: the same recipe, longer, in OUT/vpt-pad-grid-<E>ep/.
#
#   DATA=data/mini [TASKS=fmnist-5to9,count] [WIDTHS=1,11,3,9,7] [EPOCHS=4] [THREADS=2] bench/resnet18-pad-grid.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
resnet18_suite_env
WIDTHS=${WIDTHS:-1,11,3,9,7}
EPOCHS=${EPOCHS:-4}
GRID=vpt-pad-grid; [ "$EPOCHS" = 4 ] || GRID=vpt-pad-grid-${EPOCHS}ep
export WIDTHS EPOCHS GRID

mkdir -p "$OUT"
flock "$LOCK" bash -euo pipefail -c '
  source bench/common.sh
  VPT=$(build_vpt)
  for p in ${WIDTHS//,/ }; do
    for t in ${TASKS//,/ }; do
      train_and_test "$OUT/$GRID/p$p" "$t" "$t" --method vpt-pad --prompts $p --head-init trunc-normal --lr 0.25 --batch-size 16 --epochs $EPOCHS --warmup-epochs 0 --weight-decay 0.0001
    done
  done
  log "done"
'
python3 bench/resnet18_mini_suite_table.py "$OUT"
