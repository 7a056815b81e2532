#!/usr/bin/env bash
# A tiny sweep through a real single-node Slurm cluster on this machine, checked against a local sequential run.
#   1. installs Debian's slurm-wlm + munge if missing; starts munged, slurmctld, slurmd (2 CPUs) in a temp dir
#   2. `vpt sweep` locally (sequential), then `vpt sweep plan` + deploy/slurm/submit.sh (two job arrays, afterok)
#   3. cancels one grid array task mid-run (scancel) and requeues it (deploy/slurm/requeue.sh)
#   4. checks: every array task completed; the requeued run resumed from its checkpoint (each epoch logged once);
#      every result equals the local run's (spec, val/test top-1, final train loss, trainable parameters);
#      re-running a finished index recomputes nothing.
# Needs root. Run from anywhere: bash tests/cluster/slurm-sweep.sh   (KEEP=1 keeps the temp dir)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/cluster/common.sh
. "$root/tests/cluster/common.sh"
# shellcheck source=tests/cluster/slurm-local.sh
. "$root/tests/cluster/slurm-local.sh"

need_packages slurmctld:slurm-wlm munged:munge /usr/bin/python3:python3
build_vpt
t=$(mktemp -d /tmp/vpt-slurm.XXXXXX)
chmod 755 "$t" # munged (user munge) reaches its socket under it
cleanup() { slurm_down "$t/slurm"; if [ "${KEEP:-}" = 1 ]; then echo "kept $t"; else rm -rf "$t"; fi; }
trap cleanup EXIT

# One task of synthetic fractal images (built-in data specs: nothing to download or generate on disk).
cat > "$t/tiny.json" <<'EOF'
{"name": "tiny", "root": ".", "tasks": [
  {"name": "shapes", "group": "Natural", "classes": 3, "train": "fractal:3:40:1", "val": "fractal:3:10:2",
   "train_val": "fractal:3:40:1|fractal:3:10:2", "test": "fractal:3:20:3"}]}
EOF
epochs=30
opts=(--suite "$t/tiny.json" --backbone random:vit-ti4-32:1 --width 32 --depth 2 --heads 2 --mlp-dim 64 --patch-size 8
      --methods linear,vpt-deep --lrs 1,0.25 --prompts 2 --epochs $epochs --warmup-epochs 1 --batch-size 8 --seeds 2
      --threads 1 --workers 1)

step "local sequential sweep"
s0=$SECONDS
$VPT sweep "${opts[@]}" --out "$t/local" > "$t/local.log"
local_s=$((SECONDS - s0))

step "plan + single-node Slurm cluster"
shared="$t/shared/sweep"
$VPT sweep plan "${opts[@]}" --out "$shared"
slurm_up "$t/slurm"
sinfo

step "submit"
s0=$SECONDS
VPT="$VPT" VPT_CPUS_PER_TASK=1 "$root/deploy/slurm/submit.sh" "$shared"
# shellcheck disable=SC1091
. "$shared/slurm-jobs.env"

# The victim: grid item 2 (vpt-deep, lr 1) — cancelled once its third epoch is logged.
victim_id=$(sed -n 3p "$shared/plan.jsonl" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["spec"]["method"])')
[ "$victim_id" = vpt-deep ] || fail "grid item 2 is $victim_id, expected a vpt-deep run"
vlog="$shared/logs/shapes/vpt-deep/tune_lr1_wd0.0001_p2.log"
wait_for 180 "grid task 2 logs its third epoch" bash -c "[ \"\$(cat '$vlog' 2>/dev/null | grep -c ' epoch {')\" -ge 3 ]"
scancel "${GRID_JOB}_2"
wait_for 60 "grid task 2 is cancelled" bash -c "scontrol show job '${GRID_JOB}_2' | grep -q 'JobState=CANCELLED'"
logged=$(grep -c ' epoch {' "$vlog")
[ ! -f "$shared/runs/shapes/vpt-deep/tune_lr1_wd0.0001_p2.json" ] || fail "the cancelled run has a result: it finished before scancel"
[ "$logged" -lt $epochs ] || fail "the cancelled run logged all $epochs epochs"
ls "$shared/work/shapes/vpt-deep/tune_lr1_wd0.0001_p2/train-state.json" > /dev/null || fail "no checkpoint left by the cancelled run"
echo "cancelled ${GRID_JOB}_2 after $logged of $epochs epochs"

step "requeue"
"$root/deploy/slurm/requeue.sh" "$shared" grid 2
wait_for 600 "both arrays finish" bash -c "[ -z \"\$(squeue -h -j '$GRID_JOB,$FINAL_JOB' -o %i)\" ]"
slurm_s=$((SECONDS - s0))

step "checks"
for job in "$GRID_JOB" "$FINAL_JOB"; do
  scontrol show job "$job" | grep -E '^JobId|JobState|ExitCode' | paste - - - > "$t/states-$job"
  cat "$t/states-$job"
  bad=$(grep -v 'JobState=COMPLETED.*ExitCode=0:0' "$t/states-$job" || true)
  [ -z "$bad" ] || fail "array $job has tasks that did not complete: $bad"
done
scontrol show job "${GRID_JOB}_2" | grep -q 'Restarts=1' || fail "grid task 2 was not restarted once"
[ "$(grep -c ' start ' "$vlog")" = 2 ] || fail "grid task 2's log should show two attempts"
# Resumed from the checkpoint: no epoch logged twice across both attempts, the second attempt starting right after the
# last committed epoch. The one line that may be missing is that epoch's: the kill can land between the checkpoint's
# commit (train-state.json) and its log line.
/usr/bin/python3 - "$vlog" "$epochs" <<'EOF2' || fail "epochs in $vlog are not 1..$epochs resumed once: $(grep -o '"epoch":[0-9]*' "$vlog" | cut -d: -f2 | paste -sd' ')"
import re, sys
attempts, cur = [], None
for line in open(sys.argv[1]):
    if " start " in line: cur = []; attempts.append(cur)
    elif (m := re.search(r'"epoch":(\d+)', line)) and cur is not None: cur.append(int(m.group(1)))
total = int(sys.argv[2])
assert len(attempts) == 2 and attempts[1], attempts
first, second = attempts
resumed_at = second[0]  # the checkpoint held resumed_at - 1 epochs
assert first == list(range(1, len(first) + 1)), first
assert second == list(range(resumed_at, total + 1)), second
assert len(first) in (resumed_at - 1, resumed_at - 2), (len(first), resumed_at)  # at most the committed epoch's line lost
EOF2

/usr/bin/python3 - "$t/local/runs" "$shared/runs" <<'EOF'
import json, pathlib, sys
local, cluster = (pathlib.Path(p) for p in sys.argv[1:3])
def load(d): return {str(f.relative_to(d)): json.loads(f.read_text()) for f in sorted(d.rglob("*.json"))}
a, b = load(local), load(cluster)
assert a.keys() == b.keys(), f"different runs: local only {sorted(a.keys() - b.keys())}, cluster only {sorted(b.keys() - a.keys())}"
keys = ["spec", "val_top1", "test_top1", "final_train_loss", "trainable_params", "train_images", "eval_images", "backbone_sha256"]
for name in a:
    for k in keys:
        assert a[name].get(k) == b[name].get(k), f"{name}: {k} local {a[name].get(k)} vs slurm {b[name].get(k)}"
print(f"{len(a)} results equal to the local sequential run ({', '.join(keys)}):")
for name in a:
    r = b[name]
    score = f"val {r['val_top1']:.4f}" if r.get("val_top1") is not None else f"test {r['test_top1']:.4f}"
    print(f"  {name}: {score}, final train loss {r['final_train_loss']:.6f}")
EOF

# A re-run of a finished index (e.g. a requeue after success) reads the result back and rewrites nothing.
before=$(stat -c %y "$shared/runs/shapes/vpt-deep/tune_lr1_wd0.0001_p2.json")
SLURM_ARRAY_TASK_ID=2 $VPT sweep run --out "$shared" --stage grid | tee "$t/rerun.log"
grep -q "already done" "$t/rerun.log" || fail "re-running grid 2 did not report 'already done'"
[ "$before" = "$(stat -c %y "$shared/runs/shapes/vpt-deep/tune_lr1_wd0.0001_p2.json")" ] || fail "re-running grid 2 rewrote its result"

echo "PASS slurm-sweep: local sequential ${local_s}s, Slurm (2 CPUs, with cancel + requeue) ${slurm_s}s; load: $(uptime | sed 's/.*load/load/')"
