#!/bin/bash
# Offline evidence for issue 15 (docs/results/segmentation.md): the procedural seg-shapes task, the embedded default
# backbone, head-only vs bias vs VPT-deep vs full, 3 seeds, test mIoU; example predictions of seed 0.
# AUGMENT=crop-flip (default) or setr; each gets its own table in the page. The multi-scale + flip numbers of the page:
#   vpt segment eval --task runs/seg-evidence-crop-flip/M/s0/best.vpt --data …/test --scales 0.75,1,1.25 --flip --json …
# One invocation may run a part (METHODS="full" SEEDS="1" REPORT=0) so each locked job stays short; parts share OUT and
# machine.txt collects every part's start line. LR_<METHOD>=x (LR_VPT_DEEP, LR_HEAD_ONLY, …) sets a base lr chosen on
# val; PROMPTS=p, VAL_LIMIT=n (validation images per epoch).
# Run from the repository root after `dotnet build -c Release` (the CPU is shared: take the heavy lock around it):
#   flock /tmp/vpt-heavy.lock docs/results/segmentation/run.sh
set -euo pipefail
VPT=${VPT:-"dotnet src/VptSharp.Cli/bin/Release/net10.0/linux-x64/vpt.dll"}
AUGMENT=${AUGMENT:-crop-flip}
OUT=${OUT:-runs/seg-evidence-$AUGMENT}
EPOCHS=${EPOCHS:-12}
METHODS=${METHODS:-"head-only bias vpt-deep full"}
SEEDS=${SEEDS:-"0 1 2"}
PROMPTS=${PROMPTS:-10}
VAL_LIMIT=${VAL_LIMIT:-100}
# Base learning rate per method (empty: the trainer's default), e.g. LR_VPT_DEEP=0.5; chosen on val, never on test.
lr_of() { local v="LR_$(echo "$1" | tr 'a-z-' 'A-Z_')"; echo "${!v:-}"; }
mkdir -p "$OUT"
echo "$AUGMENT" > "$OUT/augment.txt"
{ echo "start $METHODS seeds $SEEDS $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"; grep -m1 'model name' /proc/cpuinfo;
  grep -m1 -o -w -E 'avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' '; echo; } >> "$OUT/machine.txt"
[ -d "$OUT/data/seg-shapes" ] || $VPT data make seg-shapes --out "$OUT/data" > /dev/null
D="$OUT/data/seg-shapes"
for m in $METHODS; do
  for s in $SEEDS; do
    R="$OUT/$m/s$s"; mkdir -p "$OUT/$m"
    start=$(date +%s.%N)
    lr=$(lr_of "$m")
    $VPT segment train --backbone default --data "$D/train" --val "$D/val" --val-limit "$VAL_LIMIT" --method "$m" --prompts "$PROMPTS" \
      --epochs "$EPOCHS" ${lr:+--lr "$lr"} --augment "$AUGMENT" --seed "$s" --out "$R" --threads 2 --force > "$R.train.log"
    $VPT segment eval --task "$R/best.vpt" --data "$D/test" --json "$R/test.json" --force > "$R.eval.log"
    echo "$(date +%s.%N) - $start" | bc > "$R.seconds"
    echo "$m seed $s: $(grep -o 'mIoU [^,]*' "$R.eval.log" | head -1) ($(cat "$R.seconds") s, load $(cut -d' ' -f1 /proc/loadavg))"
  done
  [ -f "$OUT/$m/s0/best.vpt" ] && $VPT segment predict --task "$OUT/$m/s0/best.vpt" --out "$OUT/$m/pred" --force "$D"/test/images/000[0-5].png > /dev/null
done
echo "end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
if [ "${REPORT:-1}" = 1 ]; then /usr/bin/python3 docs/results/segmentation/report.py "$OUT" docs/results/segmentation; fi
