#!/usr/bin/env bash
# VPT-pad's prompt-width grid on resnet18-imagenet (issue 12; paper §4.4 / appendix A: p ∈ {1, 3, 5, 7, 9, 11}): each
# width trained exactly as bench/resnet18-mini-suite.sh trains vpt-pad p = 5 with the trunc-normal head — base lr 0.25,
# batch 16, 4 epochs, no warm-up, on train800, the epoch picked on val200, tested on test — so the width can be chosen
# per task on val200 alone (bench/resnet18_mini_suite_table.py does, and reports that width's test top-1). Writes
# OUT/vpt-pad-grid/p<P>/<task>.json (p = 5: OUT/vpt-pad-trunc-normal/<task>.json, bench/resnet18-mini-suite.sh's run);
# widths run widest-apart first. A SEED other than 42 writes to the width's seed<SEED>/ subfolder: the seeds of a width
# already chosen on val200 with seed 42 (TASKS=count WIDTHS=11 SEED=43, one task at a time).
# EPOCHS other than 4 asks whether the budget limits vpt-pad: the same recipe, longer, in OUT/vpt-pad-grid-<E>ep/.
#
#   DATA=data/mini [TASKS=fmnist-5to9,count] [WIDTHS=1,11,3,9,7] [EPOCHS=4] [SEED=42] [THREADS=2] bench/resnet18-pad-grid.sh
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
    dir=$OUT/$GRID/p$p; [ "$p/$EPOCHS" = 5/4 ] && dir=$OUT/vpt-pad-trunc-normal
    for t in ${TASKS//,/ }; do
      train_and_test "$dir$SEED_DIR" "$t" "$t" --method vpt-pad --prompts $p --seed $SEED --head-init trunc-normal --lr 0.25 --batch-size 16 --epochs $EPOCHS --warmup-epochs 0 --weight-decay 0.0001
    done
  done
  log "done"
'
python3 bench/resnet18_mini_suite_table.py "$OUT"
