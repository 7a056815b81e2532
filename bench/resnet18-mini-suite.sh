#!/usr/bin/env bash
# Issue 12's comparison on the seven mini-suite tasks: VptSharp on resnet18-imagenet against the ML.NET peer
# (bench/MlNetPeer: DnnImageFeaturizer ResNet18 + its linear trainers, fitted on train+val, tested on test), one machine.
# Writes raw JSON and a table to $OUT (default docs/results/resnet18-mini-suite/); every step skips what is done.
#
#   DATA=data/mini bench/resnet18-mini-suite.sh
#
# VptSharp, all on train800 / val200 / test (the list files `vpt data make all` writes):
#   linear (SGD)     `vpt sweep`: base lr grid 0.25, 0.05 on train → val, 3 seeds on train+val → test, 30 epochs
#   linear (L-BFGS)  `vpt sweep --linear-lbfgs`: L2 grid 1e-4 … 1 on train → val, then train+val → test (one seed:
#                    the optimum of a strictly convex objective does not depend on it); on the features as they are
#                    (the default, as CLIP's probe and ML.NET's) and, with --lbfgs-standardize, standardised (L2 0.01, 0.1)
#   mlp-3            `vpt sweep`: the reference's 3-layer MLP head on cached features, grid and seeds as linear (SGD)
#   vpt-pad p = 5    one recipe, no grid (one run costs ~5 min on 2 cores): base lr 0.25, batch 16, 4 epochs, no
#                    warm-up, trained on train, epoch picked on val, tested; with the reference's head, then again with
#                    --head-init trunc-normal
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
resnet18_suite_env

mkdir -p "$OUT"
flock "$LOCK" bash -euo pipefail -c '
  source bench/common.sh
  VPT=$(build_vpt); PEER=$(build_peer)
  [ -f "$DATA/fmnist-5to9/test.txt" ] || { log "building the mini-suite data in $DATA"; $VPT data make all --out "$DATA" >/dev/null; }
  mkdir -p "$OUT/mlnet" "$OUT/vpt-pad" "$OUT/throughput"
  for t in ${TASKS//,/ }; do
    [ -f "$OUT/mlnet/$t.json" ] && continue
    log "ML.NET peer: $t"
    $PEER --train-list "$DATA/$t/train800val200.txt" --test-list "$DATA/$t/test.txt" --out "$OUT/mlnet/$t.json" >/dev/null 2>>"$OUT/run.log"
  done
  common=(--backbone resnet18-imagenet --suite suites/mini.json --data-root "$DATA" --tasks "$TASKS" --threads 2)
  log "VptSharp linear (SGD) sweep"
  $VPT sweep "${common[@]}" --methods linear --lrs 0.25,0.05 --wds 0.0001 --epochs 30 --warmup-epochs 3 --batch-size 64 --seeds 3 --out "$OUT/linear" | plain >> "$OUT/sweep-linear.log"
  log "VptSharp linear (L-BFGS) sweep"
  $VPT sweep "${common[@]}" --methods linear --linear-lbfgs --lrs 1 --wds 0.0001,0.001,0.01,0.1,1 --epochs 2 --warmup-epochs 0 --batch-size 64 --seeds 1 \
      --out "$OUT/linear-lbfgs" | plain >> "$OUT/sweep-linear-lbfgs.log"
  log "VptSharp linear (L-BFGS, standardised features) sweep"
  $VPT sweep "${common[@]}" --methods linear --linear-lbfgs --lbfgs-standardize --lrs 1 --wds 0.01,0.1 --epochs 2 --warmup-epochs 0 --batch-size 64 --seeds 1 \
      --out "$OUT/linear-lbfgs-standardized" | plain >> "$OUT/sweep-linear-lbfgs-standardized.log"
  log "VptSharp mlp-3 sweep"
  $VPT sweep "${common[@]}" --methods mlp-3 --lrs 0.25,0.05 --wds 0.0001 --epochs 30 --warmup-epochs 3 --batch-size 64 --seeds 3 --out "$OUT/mlp3" | plain >> "$OUT/sweep-mlp3.log"
  for head in reference trunc-normal; do
    dir=$OUT/vpt-pad; [ $head = reference ] || dir=$OUT/vpt-pad-$head
    for t in ${TASKS//,/ }; do
      train_and_test "$dir" "$t" "$t" --method vpt-pad --pad-init xavier --prompts 5 --head-init $head --lr 0.25 --batch-size 16 --epochs 4 --warmup-epochs 0 --weight-decay 0.0001
    done
  done
  # Only the speed of these task files counts: their fixed L2 (0.1) is not tuned, so their top-1 is not a result.
  log "featurization throughput: vpt eval (decode, resize, forward, head) of a linear task file per task"
  for t in ${TASKS//,/ }; do
    [ -f "$OUT/throughput/$t.json" ] && continue
    $VPT train --backbone resnet18-imagenet --data "$DATA/$t/train800val200.txt" --method linear --optimizer lbfgs --weight-decay 0.1 \
        --epochs 1 --warmup-epochs 0 --threads 2 --force --out "$OUT/throughput/work-$t" >/dev/null
    $VPT eval --task "$OUT/throughput/work-$t/task.vpt" --data "$DATA/$t/test.txt" --threads 2 --json "$OUT/throughput/$t.json" --force >/dev/null
    rm -rf "$OUT/throughput/work-$t"
  done
  log "done"
'
python3 bench/resnet18_mini_suite_table.py "$OUT"
