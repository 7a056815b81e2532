#!/bin/bash
# Issue 13 part C, session 10: completes the 10-epoch reference-recipe rerun in the same sweep folder and options.
# Phase 1: Bias and Adapter with the AdamW grid widened above the reference's 0.005 (0.01, 0.02, 0.05; labelled), 3 seeds.
# Phase 2: VPT-shallow (SGD grid of the others), 3 seeds. Phase 3: Full gets the reference grid's 0.005.
# Phase 4: the reference grid's 0.0005 for the AdamW family. Two 1-thread lanes (--shard i/2 of the (task, method) pairs).
cd /tmp/benchtree10
V=src/VptSharp.Cli/bin/Release/net10.0/linux-x64/vpt
sweep() {  # methods full-lrs shard
  nice -n 10 $V sweep --suite suites/mini.json --data-root /work/runs/data/mini \
    --methods "$1" --lrs 2.5,0.5,0.1,0.05 --full-lrs "$2" --reductions 8 \
    --wds 0.0001 --prompts 10 --epochs 10 --seeds 3 --batch-size 64 --warmup-epochs 1 --head-init trunc-normal \
    --threads 1 --workers 1 --shard "$3" --out /work/runs/s9/mini-tn
}
lane() {  # i
  sweep bias,adapter 0.05,0.02,0.01,0.005,0.001,0.0001 $1/2
  sweep vpt-shallow 0.001,0.0001 $1/2
  sweep full 0.005,0.001,0.0001 $1/2
  sweep bias,adapter 0.05,0.02,0.01,0.005,0.001,0.0005,0.0001 $1/2
  sweep full 0.005,0.001,0.0005,0.0001 $1/2
}
lane 0 > /work/runs/s10/lane0.log 2>&1 &
lane 1 > /work/runs/s10/lane1.log 2>&1 &
wait
echo "all done $(date -u +%H:%M:%S)" >> /work/runs/s10/lane0.log
