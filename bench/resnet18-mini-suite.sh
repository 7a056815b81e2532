#!/usr/bin/env bash
# Issue 12's comparison on the seven mini-suite tasks: VptSharp on resnet18-imagenet (`vpt sweep`: lr grid on train →
# val, then seeds on train+val → test) against the ML.NET peer (bench/MlNetPeer: DnnImageFeaturizer ResNet18 + its
# linear trainers, fitted on the same train+val, tested on the same test images). One machine, one run, every heavy step
# under one lock. Writes raw JSON and a table to $OUT (default docs/results/resnet18-mini-suite/).
#
#   bench/resnet18-mini-suite.sh                        # all 7 tasks; linear 3 seeds, vpt-pad 1 seed
#   TASKS=fmnist-5to9,textures PAD_SEEDS=3 bench/resnet18-mini-suite.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/mini}
OUT=${OUT:-docs/results/resnet18-mini-suite}
LOCK=${LOCK:-/tmp/vpt-heavy.lock}
TASKS=${TASKS:-fmnist-5to9,glyphs,textures,dsprites-loc,dsprites-ori,count,distance}
# Linear: head on cached features, 30 epochs at batch 64 (3 warm-up). VPT-pad p = 5 (paper §4.4), batch 32, 6 epochs
# (1 warm-up): one VPT-pad epoch of 800 images at 224 px costs ~20–30 s on 2 cores in bf16.
LIN_LRS=${LIN_LRS:-0.25,0.05}; LIN_SEEDS=${LIN_SEEDS:-3}
PAD_LRS=${PAD_LRS:-0.25,0.05}; PAD_SEEDS=${PAD_SEEDS:-1}; PAD_EPOCHS=${PAD_EPOCHS:-6}
export DATA OUT TASKS LIN_LRS LIN_SEEDS PAD_LRS PAD_SEEDS PAD_EPOCHS

mkdir -p "$OUT"
flock "$LOCK" bash -euo pipefail -c '
  dotnet build -c Release src/VptSharp.Cli -v q -nologo >/dev/null
  dotnet build -c Release bench/MlNetPeer -v q -nologo -p:NoWarn=NU1603 >/dev/null
  VPT=src/VptSharp.Cli/bin/Release/net10.0/linux-x64/vpt
  PEER=bench/MlNetPeer/bin/Release/net10.0/linux-x64/mlnet-peer
  log() { echo "$(date -u +%H:%M:%S) load $(cut -d" " -f1-3 /proc/loadavg): $*" | tee -a "$OUT/run.log"; }
  [ -f "$DATA/fmnist-5to9/test.txt" ] || { log "building the mini-suite data in $DATA"; $VPT data make all --out "$DATA" >/dev/null; }
  mkdir -p "$OUT/mlnet"
  for t in ${TASKS//,/ }; do
    [ -f "$OUT/mlnet/$t.json" ] && continue
    log "ML.NET peer: $t"
    $PEER --train-list "$DATA/$t/train800val200.txt" --test-list "$DATA/$t/test.txt" --out "$OUT/mlnet/$t.json" >/dev/null 2>>"$OUT/run.log"
  done
  common=(--backbone resnet18-imagenet --suite suites/mini.json --data-root "$DATA" --tasks "$TASKS" --wds 0.0001 --threads 2)
  log "VptSharp linear sweep"
  $VPT sweep "${common[@]}" --methods linear --lrs "$LIN_LRS" --epochs 30 --warmup-epochs 3 --batch-size 64 --seeds "$LIN_SEEDS" \
      --out "$OUT/linear" 2>&1 | sed "s/\x1b\[[0-9;]*m//g" | grep -v "^\s*$" >> "$OUT/sweep-linear.log"
  log "VptSharp vpt-pad sweep"
  $VPT sweep "${common[@]}" --methods vpt-pad --pad-pixels 5 --lrs "$PAD_LRS" --epochs "$PAD_EPOCHS" --warmup-epochs 1 --batch-size 32 \
      --seeds "$PAD_SEEDS" --out "$OUT/vpt-pad" 2>&1 | sed "s/\x1b\[[0-9;]*m//g" | grep -v "^\s*$" >> "$OUT/sweep-vpt-pad.log"
  log "featurization throughput: vpt eval (decode, resize, forward, head) of a 1-epoch linear task file per task"
  mkdir -p "$OUT/throughput"
  for t in ${TASKS//,/ }; do
    $VPT train --backbone resnet18-imagenet --data "$DATA/$t/train800val200.txt" --method linear --epochs 1 --warmup-epochs 0 \
        --threads 2 --out "$OUT/throughput/$t" >/dev/null
    $VPT eval --task "$OUT/throughput/$t/task.vpt" --data "$DATA/$t/test.txt" --threads 2 --json "$OUT/throughput/$t.json" >/dev/null
    rm -rf "$OUT/throughput/$t"
  done
  log "done"
'
python3 bench/resnet18_mini_suite_table.py "$OUT"
