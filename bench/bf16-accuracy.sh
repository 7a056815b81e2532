#!/usr/bin/env bash
# Accuracy impact of bf16 (issue 17) on the mini-suite tasks: each of METHODS (default: Linear and VPT-deep p = 10,
# prefix form) trained and tested once in fp32 and once in bf16 on each task, same seed, same data, EPOCHS epochs;
# prints a markdown table (test top-1). Finished runs are reused.
# Needs: apt-get install -y dataset-fashion-mnist fonts-dejavu-core; a CPU with avx512_bf16 for bf16 to be fast.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/bf16-accuracy}
EPOCHS=${EPOCHS:-10}
METHODS=${METHODS:-linear vpt-deep}
dotnet build -c Release src/VptSharp.Cli -v q -nologo > /dev/null
VPT=(dotnet src/VptSharp.Cli/bin/Release/net10.0/linux-x64/vpt.dll)
mkdir -p "$OUT"
[ -d "$OUT/data" ] || "${VPT[@]}" data make all --out "$OUT/data" > /dev/null
echo "CPU: $(grep -m1 -o 'avx512_bf16' /proc/cpuinfo || echo 'no avx512_bf16'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| task | method | fp32 test top-1 | bf16 test top-1 | bf16 − fp32 |"
echo "|---|---|---:|---:|---:|"
for dir in "$OUT"/data/*/; do
  task=$(basename "$dir")
  [ -f "$dir/train800.txt" ] || continue
  for method in $METHODS; do
    declare -A acc=()
    extra=(); [ "$method" = vpt-deep ] && extra=(--prompts 10)
    for prec in fp32 bf16; do
      run="$OUT/$task/$method-$prec"; mkdir -p "$OUT/$task"
      if [ ! -f "$run/test.json" ]; then
        "${VPT[@]}" train --backbone default --data "$dir/train800.txt" --val "$dir/val200.txt" --method "$method" \
          "${extra[@]}" --epochs "$EPOCHS" --precision "$prec" --threads 2 --out "$run" --force > "$run.log" 2>&1
        "${VPT[@]}" eval --task "$run/task.vpt" --data "$dir/test.txt" --precision "$prec" --threads 2 --json "$run/test.json" --force > /dev/null
      fi
      acc[$prec]=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['top1']*100)" "$run/test.json")
    done
    /usr/bin/python3 -c "import sys; a,b=float(sys.argv[3]),float(sys.argv[4]); print(f'| {sys.argv[1]} | {sys.argv[2]} | {a:.2f}% | {b:.2f}% | {b-a:+.2f} |')" \
      "$task" "$method" "${acc[fp32]}" "${acc[bf16]}"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
