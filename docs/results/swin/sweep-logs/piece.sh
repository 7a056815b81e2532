#!/bin/bash
# one flock'd piece of the Swin mini-suite sweep: tasks "$1", methods "$2", at most $3 seconds (resumable)
cd /work/wt-swin
VPT=src/VptSharp.Cli/bin/Release/net10.0/linux-x64/vpt
echo "piece start $(date -u +%FT%TZ) tasks=$1 methods=$2 $(uptime)"
timeout ${3:-840} $VPT sweep --suite suites/mini.json --data-root /work/swin-runs/mini --backbone /work/swin-runs/pretrain-swin/backbone.safetensors \
  --tasks "$1" --methods "$2" --lrs ${4:-2.5} --full-lrs 0.001 --wds 0.0001 --prompts 5 \
  --epochs 4 --warmup-epochs 0 --batch-size 64 --seeds 1 --in-process --out /work/swin-runs/sweep
echo "piece rc $? end $(date -u +%FT%TZ) $(uptime)"
