#!/usr/bin/env bash
# Requeues array tasks of a submitted sweep (cancelled, failed, or running on a node being drained):
#   deploy/slurm/requeue.sh DIR grid|final INDEX...
# A requeued task resumes its run from the last epoch checkpoint; finished runs are never recomputed.
# Slurm remembers a cancelled or failed task in the whole array's afterok, so after requeueing grid tasks the final
# array's dependency is re-pointed at the grid's tasks one by one (afterok:G_0:G_1:…), which the requeued ones satisfy.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 SWEEP_DIR grid|final INDEX..." >&2; exit 2; }
dir=$(realpath "$1"); stage=$2; shift 2
[ -f "$dir/slurm-jobs.env" ] || { echo "error: $dir/slurm-jobs.env: not submitted with deploy/slurm/submit.sh" >&2; exit 1; }
# shellcheck disable=SC1091
. "$dir/slurm-jobs.env"
case $stage in grid) job=$GRID_JOB ;; final) job=$FINAL_JOB ;; *) echo "error: stage '$stage': use grid or final" >&2; exit 2 ;; esac
for i in "$@"; do scontrol requeue "${job}_$i"; echo "requeued ${job}_$i ($stage $i)"; done
if [ "$stage" = grid ] && squeue -h -j "$FINAL_JOB" -t PENDING -o %i | grep -q .; then
  deps=$(seq 0 $((GRID_RUNS - 1)) | sed "s/^/${GRID_JOB}_/" | paste -sd:)
  scontrol update JobId="$FINAL_JOB" Dependency="afterok:$deps"
  echo "final array $FINAL_JOB now waits on each grid task"
fi
