#!/bin/bash
# Pretraining-source comparison: equal image budget (30k images, 1 epoch), then linear probe on a class-disjoint downstream task.
VPT="dotnet /work/main/src/VptSharp.Cli/bin/Release/net10.0/linux-x64/vpt.dll"
COMMON="--width 128 --depth 6 --heads 4 --patch 4 --image-size 32 --epochs 1 --warmup-epochs 0 --batch-size 128 --lr 0.002 --weight-decay 0.05"
declare -A SRC=( [fractal]="fractal:100:200" [fmnist]="fashion-mnist:train[0:40000]@0-4" [mix]="fractal:100:100+fashion-mnist:train[0:20000]@0-4" )
for k in fractal fmnist mix; do
  $VPT pretrain --data "${SRC[$k]}" $COMMON --out /tmp/cmp/$k > /tmp/cmp/$k.pretrain.log 2>&1
  $VPT train --backbone /tmp/cmp/$k/backbone.safetensors --method linear --data "fashion-mnist:train[0:10000]@5-9" --epochs 30 --warmup-epochs 3 --lr 0.1 --weight-decay 0 --out /tmp/cmp/$k-linear > /tmp/cmp/$k.linear.log 2>&1
  $VPT eval --task /tmp/cmp/$k-linear/task.vpt --data "fashion-mnist:test@5-9" --json /tmp/cmp/$k-linear/test.json > /tmp/cmp/$k.eval.log 2>&1
done
echo ALLDONE > /tmp/cmp/done
