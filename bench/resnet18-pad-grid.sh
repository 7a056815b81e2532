#!/usr/bin/env bash
# VPT-pad's prompt-width grid on resnet18-imagenet (issue 12; paper §4.4 / appendix A: p ∈ {1, 3, 5, 7, 9, 11}): each
# width trained exactly as bench/resnet18-mini-suite.sh trains vpt-pad p = 5 with the trunc-normal head — base lr 0.25,
# batch 16, 4 epochs, no warm-up, on train800, the epoch picked on val200, tested on test — so the width can be chosen
# per task on val200 alone (bench/resnet18_mini_suite_table.py does, and reports that width's test top-1). Writes
# OUT/vpt-pad-grid/p<P>/<task>.json (p = 5: OUT/vpt-pad-trunc-normal/<task>.json, bench/resnet18-mini-suite.sh's run);
# widths run widest-apart first. A SEED other than 42 writes to the width's seed<SEED>/ subfolder: the seeds of a width
# already chosen on val200 with seed 42 (TASKS=count WIDTHS=11 SEED=43, one task at a time).
# EPOCHS other than 4 asks whether the budget limits vpt-pad: the same recipe, longer, in OUT/vpt-pad-grid-<E>ep/.
# PAD_INIT says how the pad starts (`vpt train --pad-init`): pixels, the reference code's U(0, 1) pixels normalised like
# the image (the default; OUT/vpt-pad-pixels-grid/p<P>/, every width its own run), or xavier, normalised values (what
# VptSharp built before the reference's form; sessions 7-12's runs, in the folders above).
#
#   DATA=data/mini [TASKS=fmnist-5to9,count] [WIDTHS=1,11,5,3,9,7] [EPOCHS=4] [PAD_INIT=pixels] [SEED=42] [THREADS=2] bench/resnet18-pad-grid.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
resnet18_suite_env
PAD_INIT=${PAD_INIT:-pixels}
# xavier's p = 5 is bench/resnet18-mini-suite.sh's run; the pixel form runs every width.
DEFAULT_WIDTHS=1,11,5,3,9,7; [ $PAD_INIT = xavier ] && DEFAULT_WIDTHS=1,11,3,9,7
WIDTHS=${WIDTHS:-$DEFAULT_WIDTHS}
EPOCHS=${EPOCHS:-4}
GRID=vpt-pad-grid; [ $PAD_INIT = xavier ] || GRID=vpt-pad-$PAD_INIT-grid; [ "$EPOCHS" = 4 ] || GRID=$GRID-${EPOCHS}ep
export WIDTHS EPOCHS GRID PAD_INIT

mkdir -p "$OUT"
flock "$LOCK" bash -euo pipefail -c '
  source bench/common.sh
  VPT=$(build_vpt)
  for p in ${WIDTHS//,/ }; do
    dir=$OUT/$GRID/p$p; [ "$p/$EPOCHS/$PAD_INIT" = 5/4/xavier ] && dir=$OUT/vpt-pad-trunc-normal
    for t in ${TASKS//,/ }; do
      train_and_test "$dir$SEED_DIR" "$t" "$t" --method vpt-pad --pad-init $PAD_INIT --prompts $p --seed $SEED --head-init trunc-normal --lr 0.25 --batch-size 16 --epochs $EPOCHS --warmup-epochs 0 --weight-decay 0.0001
    done
  done
  log "done"
'
python3 bench/resnet18_mini_suite_table.py "$OUT"
