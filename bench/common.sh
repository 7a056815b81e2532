# Shared by the bench scripts (sourced inside their heavy-lock shell, and for resnet18_suite_env at their top): build, log
# with the load average, strip colours, one train-and-test run, the resnet18 scripts' settings.
build_vpt() { dotnet build -c Release src/VptSharp.Cli -v q -nologo >/dev/null && echo src/VptSharp.Cli/bin/Release/net10.0/linux-x64/vpt; }
build_peer() { dotnet build -c Release bench/MlNetPeer -v q -nologo -p:NoWarn=NU1603 >/dev/null && echo bench/MlNetPeer/bin/Release/net10.0/linux-x64/mlnet-peer; }
log() { echo "$(date -u +%H:%M:%S) load $(cut -d" " -f1-3 /proc/loadavg): $*" | tee -a "$OUT/run.log"; }
plain() { sed "s/\x1b\[[0-9;]*m//g" | grep -v "^\s*$" || true; }
# One resnet18-imagenet run on a mini-suite task: `vpt train` on train800 (val200 picks the epoch), `vpt eval` on test;
# keeps DIR/NAME.json (eval), NAME-metrics.jsonl and NAME-train.log; skipped when DIR/NAME.json exists. Needs $VPT, $DATA.
#   train_and_test DIR NAME TASK [vpt train arguments...]
train_and_test() {
  local dir=$1 name=$2 t=$3; shift 3
  [ -f "$dir/$name.json" ] && return 0
  mkdir -p "$dir"
  log "VptSharp $name ($*)"
  $VPT train --backbone resnet18-imagenet --data "$DATA/$t/train800.txt" --val "$DATA/$t/val200.txt" --threads "${THREADS:-2}" --force \
      --out "$dir/work-$name" "$@" | plain > "$dir/$name-train.log"
  $VPT eval --task "$dir/work-$name/task.vpt" --data "$DATA/$t/test.txt" --threads "${THREADS:-2}" --json "$dir/$name.json" --force >/dev/null
  cp "$dir/work-$name/metrics.jsonl" "$dir/$name-metrics.jsonl"; rm -rf "$dir/work-$name"
}
# The resnet18-imagenet mini-suite scripts' settings; the environment overrides each.
resnet18_suite_env() {
  DATA=${DATA:-data/mini}; OUT=${OUT:-docs/results/resnet18-mini-suite}; LOCK=${LOCK:-/tmp/vpt-heavy.lock}; THREADS=${THREADS:-2}
  TASKS=${TASKS:-fmnist-5to9,glyphs,textures,dsprites-loc,dsprites-ori,count,distance}
  # SEED 42 (`vpt train`'s default) is each recipe's first run, in its folder; other seeds go to its seed<S>/ subfolder.
  SEED=${SEED:-42}; SEED_DIR=""; [ "$SEED" = 42 ] || SEED_DIR=/seed$SEED
  export DATA OUT LOCK TASKS THREADS SEED SEED_DIR
}
