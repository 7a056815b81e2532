#!/usr/bin/env bash
# Two `vpt serve` replicas behind Debian's nginx on loopback; one is stopped under load, and failed requests are counted.
#   phase 1: replica A gets SIGTERM mid-load (drain: /readyz 503 while it still serves, listener closes, in-flight
#            requests finish, exit 0); then A is started again
#   phase 2: replica B gets SIGKILL mid-load (in-flight requests die with it; nginx retries them on A)
# nginx: upstream of both, proxy_next_upstream error timeout http_502 http_503 non_idempotent (a prediction is a pure
# function of the image, so retrying the POST is safe). Each phase is bounded (--max-seconds). Goal: 0 failed requests.
# Needs root (apt-get nginx if missing). Run: bash tests/cluster/nginx-replicas.sh   (KEEP=1 keeps the temp dir)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/cluster/common.sh
. "$root/tests/cluster/common.sh"

need_packages nginx:nginx curl:curl /usr/bin/python3:python3
build_vpt
t=$(mktemp -d /tmp/vpt-nginx.XXXXXX)
chmod 755 "$t"
pids=()
nginx_pid=
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null || true; done
  if [ -n "$nginx_pid" ]; then
    # SIGTERM to the master stops its workers too (SIGKILL would orphan them, and they would keep inherited fds open).
    kill -TERM "$nginx_pid" 2> /dev/null || true
    for _ in $(seq 1 50); do kill -0 "$nginx_pid" 2> /dev/null || break; sleep 0.1; done
    pkill -KILL -P "$nginx_pid" 2> /dev/null || true
    kill -KILL "$nginx_pid" 2> /dev/null || true
    wait "$nginx_pid" 2> /dev/null || true
  fi
  if [ "${KEEP:-}" = 1 ]; then echo "kept $t"; else rm -rf "$t"; fi
}
trap cleanup EXIT
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
bb=(--backbone default) # the embedded 2.4 MB ViT: task files name it, so loadtest --expect-from can reload it
# fp32 on both sides: the check is "the replicas answer what the task file answers offline", and fp32 answers do not
# depend on how requests were micro-batched; bf16 (the auto choice on avx512_bf16) can flip near-ties of this 1-epoch task.
prec=(--precision fp32)

step "a task on the default backbone, and labelled images to send"
$VPT data make dsprites-loc --out "$t/data" > /dev/null
mkdir -p "$t/tasks"
$VPT train "${bb[@]}" --data "$t/data/dsprites-loc/train800.txt" --method vpt-deep --prompts 2 --epochs 1 --batch-size 32 \
  --threads 1 --out "$t/train" > /dev/null
cp "$t/train/task.vpt" "$t/tasks/dsprites.vpt"
head -n 300 "$t/data/dsprites-loc/test.txt" > "$t/data/dsprites-loc/load.txt" # 300 distinct images, sent round-robin

pa=$(port); pb=$(port); pn=$(port)
# start_replica NAME PORT — a replica on the shared task folder; waits until /readyz says 200.
start_replica() {
  $VPT serve "${bb[@]}" "${prec[@]}" --tasks "$t/tasks" --port "$2" --threads 1 --drain-seconds 2 --shutdown-timeout-seconds 20 \
    > "$t/$1.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  eval "pid_$1=$pid"
  wait_for 90 "replica $1 is ready" curl -fs -o /dev/null "http://127.0.0.1:$2/readyz"
}
step "replicas A (:$pa) and B (:$pb)"
start_replica a "$pa"
start_replica b "$pb"

step "nginx on :$pn"
mkdir -p "$t/nginx-tmp"
cat > "$t/nginx.conf" <<EOF
worker_processes 1;
user root;
daemon off;
pid $t/nginx.pid;
error_log $t/nginx-error.log warn;
events { worker_connections 512; }
http {
  log_format up '\$status \$upstream_addr \$upstream_status \$request_time \$msec';
  access_log $t/nginx-access.log up;
  client_body_temp_path $t/nginx-tmp/body; proxy_temp_path $t/nginx-tmp/proxy; fastcgi_temp_path $t/nginx-tmp/fcgi;
  uwsgi_temp_path $t/nginx-tmp/uwsgi; scgi_temp_path $t/nginx-tmp/scgi;
  upstream vpt {
    server 127.0.0.1:$pa max_fails=1 fail_timeout=2s;
    server 127.0.0.1:$pb max_fails=1 fail_timeout=2s;
  }
  server {
    listen 127.0.0.1:$pn;
    client_max_body_size 8m;
    client_body_buffer_size 1m;
    location / {
      proxy_pass http://vpt;
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_next_upstream_tries 3;
      proxy_next_upstream_timeout 15s;
      proxy_connect_timeout 1s;
      proxy_read_timeout 30s;
    }
  }
}
EOF
nginx -t -p "$t" -c "$t/nginx.conf" 2> "$t/nginx-t.log" || { cat "$t/nginx-t.log"; fail "nginx rejected its config"; }
nginx -p "$t" -c "$t/nginx.conf" &
nginx_pid=$!
wait_for 20 "nginx answers" curl -fs -o /dev/null "http://127.0.0.1:$pn/readyz"

# load PHASE — bounded load through nginx for 14 s (8 clients); its JSON report goes to $t/PHASE.json.
load() {
  $VPT loadtest --url "http://127.0.0.1:$pn/" --task dsprites --data "$t/data/dsprites-loc/load.txt" \
    --expect-from "$t/tasks/dsprites.vpt" "${prec[@]}" --requests 100000 --concurrency 8 --max-seconds 14 > "$t/$1.out" 2>&1 || true
  tail -n 1 "$t/$1.out" > "$t/$1.json"
}
# flowing — waits until the load runs (the loader first computes its expected answers offline), then 2 s more.
flowing() {
  wait_for 120 "load flows through nginx" bash -c "[ \$(grep -c . $t/nginx-access.log) -ge 100 ]"
  sleep 2
}
# field PHASE NAME — a number from a phase's report.
field() { /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$t/$1.json" "$2"; }

step "phase 1: SIGTERM to replica A under load"
: > "$t/nginx-access.log"
load drain & loader=$!
flowing
kill -TERM "$pid_a"
wait_for 2 "draining replica A answers /readyz with 503" \
  bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$pa/readyz)\" = 503 ]"
set +e; wait "$pid_a"; a_exit=$?; set -e
[ "$a_exit" = 0 ] || fail "replica A exited with $a_exit after SIGTERM, expected 0: $(tail -n 5 "$t/a.log")"
grep -q "draining" "$t/a.log" || fail "replica A did not log its drain"
wait "$loader"
cp "$t/nginx-access.log" "$t/drain-access.log"
start_replica a "$pa" # back to two replicas
# Open-source nginx has no active health checks: it learns that A is back only when a live request succeeds on it,
# and until then lets one probe request at a time through to A. Warm it up the way a rollout would, through nginx.
wait_for 60 "nginx routes to replica A again" bash -c "curl -s -o /dev/null -H 'Content-Type: image/png' \
  --data-binary @$t/data/dsprites-loc/$(head -n 1 "$t/data/dsprites-loc/load.txt" | cut -d' ' -f1) \
  http://127.0.0.1:$pn/v1/tasks/dsprites/predict; grep -q '127.0.0.1:$pa 200' $t/nginx-access.log"

step "phase 2: SIGKILL to replica B under load"
: > "$t/nginx-access.log"
load kill & loader=$!
flowing
kill -9 "$pid_b"
wait "$loader"
cp "$t/nginx-access.log" "$t/kill-access.log"

step "results"
total_failed=0
for phase in drain kill; do
  ok=$(field $phase Ok); shed=$(field $phase Shed); errors=$(field $phase Errors); wrong=$(field $phase WrongAnswers)
  rps=$(field $phase OkPerSecond); p99=$(field $phase P99Ms)
  retried=$(grep -c ',' "$t/$phase-access.log" || true)       # requests nginx sent to a second upstream
  bad=$(grep -cvE '^200 ' "$t/$phase-access.log" || true)      # what nginx answered with anything but 200
  printf '%-5s: %s answered 200 (%.0f req/s, p99 %.0f ms), %s retried on the other replica by nginx, failed: %s errors + %s shed + %s non-200 at nginx, %s wrong top-1\n' \
    "$phase" "$ok" "$rps" "$p99" "$retried" "$errors" "$shed" "$bad" "$wrong"
  [ "$ok" -gt 100 ] || fail "$phase: only $ok requests answered; the load did not run"
  total_failed=$((total_failed + errors + shed + bad + wrong))
done
[ "$total_failed" = 0 ] || fail "$total_failed failed requests (see $t when run with KEEP=1)"
echo "PASS nginx-replicas: 0 failed requests across SIGTERM drain and SIGKILL; load: $(uptime | sed 's/.*load average: //')"
