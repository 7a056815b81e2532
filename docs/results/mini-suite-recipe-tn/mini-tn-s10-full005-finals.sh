#!/bin/bash
# Issue 13 part C, session 10: Full at the reference grid's 0.005 won val on 6 of 7 tasks (the tune runs of full005.sh,
# now in the sweep folder as the sweep writes them): the sweep with Full's grid 0.005/0.001/0.0001 runs the finals of the
# new selection. Two 1-thread shards.
cd /tmp/benchtree10
V=src/VptSharp.Cli/bin/Release/net10.0/linux-x64/vpt
run() {
  nice -n 10 $V sweep --suite suites/mini.json --data-root /work/runs/data/mini --methods full --lrs 2.5,0.5,0.1,0.05 --full-lrs 0.005,0.001,0.0001 \
    --reductions 8 --wds 0.0001 --prompts 10 --epochs 10 --seeds 3 --batch-size 64 --warmup-epochs 1 --head-init trunc-normal \
    --threads 1 --workers 1 --shard $1/2 --out /work/runs/s9/mini-tn > /work/runs/s10/full005-finals-$1.log 2>&1
}
run 0 & run 1 & wait
