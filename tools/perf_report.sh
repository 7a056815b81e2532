#!/usr/bin/env bash
# Regenerates docs/performance.md from one set of measurements on this machine (issue 17):
#   1. vpt bench --compare pytorch: VptSharp rows and the PyTorch peer (tools/bench_pytorch.py) in one invocation,
#      ViT-B/16, batch 8, 2 threads, with the CPU's vector extensions and the load average before and after;
#   2. vpt bench --profile of the VPT-deep p = 50 training step (prefix form, precision auto) against its GEMM floor;
#   3. the demo in fp32 and in bf16 (accuracy impact of bf16), unless --skip-demo (then the last demo JSONs are reused).
# The whole run holds flock /tmp/vpt-heavy.lock once (other heavy jobs on the machine wait, and so does this).
# --skip-bench / --skip-demo reuse the last results of that part; DEMO_PRECISIONS="bf16" runs one demo only. Debian's /usr/bin/python3 formats the page.
# Needs: apt-get install -y python3-torch python3-torchvision libopenblas0-openmp dataset-fashion-mnist fonts-dejavu-core
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=docs/results/performance/issue-17
LOCK=/tmp/vpt-heavy.lock
if [ -z "${VPT_PERF_LOCKED:-}" ]; then exec flock "$LOCK" env VPT_PERF_LOCKED=1 "$0" "$@"; fi
SKIP_DEMO=0; SKIP_BENCH=0
for a in "$@"; do case "$a" in --skip-demo) SKIP_DEMO=1;; --skip-bench) SKIP_BENCH=1;; *) echo "usage: $0 [--skip-bench] [--skip-demo]" >&2; exit 2;; esac; done
mkdir -p "$OUT"
dotnet build -c Release src/VptSharp.Cli -v q -nologo >/dev/null
# A private copy of the build: later builds in this tree (tests, edits) cannot change what is being measured.
BIN=$(mktemp -d /tmp/vpt-perf.XXXXXX)
trap 'rm -rf "$BIN"' EXIT
cp -r src/VptSharp.Cli/bin/Release/net10.0/linux-x64/. "$BIN/"
VPT=(dotnet "$BIN/vpt.dll")

ROWS=matmul:mm:1024:fp32,matmul:mm:1024:bf16,infer:plain:0:fp32,infer:plain:0:bf16,infer:vpt-deep:50:fp32,infer:vpt-prefix:50:fp32,infer:vpt-prefix:50:bf16,train:vpt-deep:50:fp32,train:vpt-prefix:50:fp32,train:vpt-prefix:50:bf16
if [ "$SKIP_BENCH" = 0 ]; then
  "${VPT[@]}" bench --backbone random:vit-b16 --batch 8 --iters 3 --threads 2 --only "$ROWS" \
    --compare pytorch --out "$OUT/bench.json" --markdown "$OUT/bench.md"
fi
"${VPT[@]}" bench --backbone random:vit-b16 --batch 8 --iters 3 --threads 2 \
  --profile train:vpt-prefix:50:auto --out "$OUT/profile-vpt-prefix-50.json" --markdown "$OUT/profile-vpt-prefix-50.md"
if [ "$SKIP_DEMO" = 0 ]; then
  for p in ${DEMO_PRECISIONS:-fp32 bf16}; do
    "${VPT[@]}" demo --backbone default --precision "$p" --threads 2 --out "runs/perf-demo-$p" > "$OUT/demo-$p.log"
    cp "runs/perf-demo-$p/demo.json" "$OUT/demo-$p.json"
  done
fi

/usr/bin/python3 tools/perf_page.py "$OUT" > docs/performance.md.tmp && mv docs/performance.md.tmp docs/performance.md
echo "wrote docs/performance.md"
