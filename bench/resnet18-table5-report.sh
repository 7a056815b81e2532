#!/usr/bin/env bash
# Table 5 on resnet18-imagenet as one `vpt report` (issue 12): the linear and mlp-3 sweeps of bench/resnet18-mini-suite.sh
# and the 4-epoch runs of bench/resnet18-short-budget.sh and bench/resnet18-pad-grid.sh (every seed present), gathered by
# bench/resnet18_table5_runs.py into OUT/table5/ (PROTOCOL.md there says how each method's runs were made), then reported:
# OUT/table5/report.md, report.csv, tasks.png. Needs only the runs' JSON, not the data.
#
#   [OUT=docs/results/resnet18-mini-suite] bench/resnet18-table5-report.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
resnet18_suite_env
python3 bench/resnet18_mini_suite_table.py "$OUT" >/dev/null
python3 bench/resnet18_table5_runs.py "$OUT"
VPT=${VPT:-$(flock "$LOCK" bash -c 'source bench/common.sh; build_vpt')}
$VPT report "$OUT/table5" --methods linear,mlp-3,vpt-pad,partial-1,bias,full | plain | tail -n 1
# The report's header describes a sweep's final runs; these are not all that: say so above it.
sed -i '1a\
\
> Not one `vpt sweep`: the runs of several recipes gathered by bench/resnet18_table5_runs.py. Their protocol (not all are\
> train+val → test finals) is in [PROTOCOL.md](PROTOCOL.md).' "$OUT/table5/report.md"
