#!/usr/bin/env bash
# Submits a sweep plan (made by `vpt sweep plan --out DIR`) to Slurm as two job arrays: the grid stage, then the
# final stage with --dependency=afterok on the whole grid array. DIR must be on storage every node sees.
#   deploy/slurm/submit.sh DIR [sbatch options, e.g. --partition=cpu --time=01:00:00 --mem=8G]
# Environment: VPT (the vpt command; default `vpt`), VPT_CPUS_PER_TASK (default 1; also the torch threads per run).
# Writes DIR/slurm-jobs.env (GRID_JOB=…, FINAL_JOB=…); task output goes to DIR/logs/slurm/<stage>_<index>.out.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 SWEEP_DIR [sbatch options...]" >&2; exit 2; }
dir=$(realpath "$1"); shift
plan="$dir/plan.jsonl"
[ -f "$plan" ] || { echo "error: $plan: no sweep plan; make one with vpt sweep plan --out $dir" >&2; exit 1; }
grid=$(grep -c '"stage":"grid"' "$plan" || true)
final=$(grep -c '"stage":"final"' "$plan" || true)
[ "$grid" -gt 0 ] && [ "$final" -gt 0 ] || { echo "error: $plan lists $grid grid and $final final runs; make the plan again" >&2; exit 1; }
cpus=${VPT_CPUS_PER_TASK:-1}
mkdir -p "$dir/logs/slurm"
common=(--parsable --cpus-per-task="$cpus" --requeue --open-mode=append --export="ALL,VPT_SWEEP=$dir,VPT_THREADS=$cpus" "$@")
g=$(sbatch "${common[@]}" --job-name=vpt-grid --array="0-$((grid - 1))" --output="$dir/logs/slurm/grid_%a.out" "$here/sweep-array.sbatch" grid)
g=${g%%;*} # --parsable prints jobid[;cluster]
f=$(sbatch "${common[@]}" --job-name=vpt-final --array="0-$((final - 1))" --dependency="afterok:$g" \
      --output="$dir/logs/slurm/final_%a.out" "$here/sweep-array.sbatch" final)
f=${f%%;*}
printf 'GRID_JOB=%s\nFINAL_JOB=%s\nGRID_RUNS=%s\nFINAL_RUNS=%s\n' "$g" "$f" "$grid" "$final" > "$dir/slurm-jobs.env.tmp"
mv "$dir/slurm-jobs.env.tmp" "$dir/slurm-jobs.env"
echo "grid: job array $g (${grid} runs); final: job array $f (${final} runs, after every grid run succeeds)"
