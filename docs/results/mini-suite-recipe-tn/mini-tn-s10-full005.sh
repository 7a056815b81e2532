#!/bin/bash
# Issue 13 part C, session 10: is Full also held back by its grid's top rate (0.001 selected on all 7 tasks)? One tuning
# run per task at the reference grid's 0.005 (train800 -> val200), through the sweep's own child mode (--run-one) with the
# sweep's options, so the run is the one `vpt sweep --full-lrs 0.005,...` would make; results kept OUT of the sweep folder
# (no finals ran for them). Two 1-thread processes.
cd /tmp/benchtree10
V=src/VptSharp.Cli/bin/Release/net10.0/linux-x64/vpt
one() {  # task group
  spec="{\"task\": \"$1\", \"group\": \"$2\", \"method\": \"full\", \"phase\": \"tune\", \"lr\": 0.005, \"weight_decay\": 0.0001, \"seed\": 0, \"fraction\": 1}"
  nice -n 10 $V sweep --suite suites/mini.json --data-root /work/runs/data/mini --methods full --lrs 2.5,0.5,0.1,0.05 --full-lrs 0.005,0.001,0.0001 \
    --reductions 8 --wds 0.0001 --prompts 10 --epochs 10 --seeds 3 --batch-size 64 --warmup-epochs 1 --head-init trunc-normal \
    --threads 1 --workers 1 --out /work/runs/s10/full005/sweep --run-one "$spec" > /work/runs/s10/full005/$1.out 2> /work/runs/s10/full005/$1.err
  tail -n 1 /work/runs/s10/full005/$1.out > /work/runs/s10/full005/$1.json
  echo "$(date -u +%H:%M:%S) $1 done"
}
( one fmnist-5to9 Natural; one textures Specialized; one distance Structured; one dsprites-ori Structured ) &
( one count Structured; one dsprites-loc Structured ) &
wait
