#!/usr/bin/env bash
# A single-node Slurm cluster on this machine (slurmctld + slurmd on localhost, 2 CPUs, munge auth), in a temp dir.
# Source it, then: slurm_up DIR (exports SLURM_CONF; daemons' pids in DIR) and slurm_down DIR.
# Needs root and Debian's slurm-wlm + munge (tests/cluster/slurm-sweep.sh installs them).

slurm_free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

slurm_up() {
  local d=$1 host; host=$(hostname -s)
  mkdir -p "$d/munge" "$d/state" "$d/spool"
  chmod 755 "$d"; chown munge:munge "$d/munge"; chmod 700 "$d/munge"
  # Our own munged with its own socket: no clash with a system one, nothing left behind.
  runuser -u munge -- /usr/sbin/munged --socket="$d/munge/munge.sock" --key-file=/etc/munge/munge.key \
    --pid-file="$d/munge/munged.pid" --log-file="$d/munge/munged.log" --seed-file="$d/munge/munged.seed" --force
  cat > "$d/slurm.conf" <<CONF
ClusterName=vptlocal
SlurmctldHost=$host
SlurmUser=root
SlurmctldPort=$(slurm_free_port)
SlurmdPort=$(slurm_free_port)
AuthType=auth/munge
AuthInfo=socket=$d/munge/munge.sock,cred_expire=10
CredType=cred/munge
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/slurmctld.log
SlurmdLogFile=$d/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=600
JobRequeue=1
NodeName=$host NodeAddr=127.0.0.1 CPUs=2 RealMemory=4000 State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$d/slurm.conf"
  /usr/sbin/slurmctld -D -c -f "$SLURM_CONF" > "$d/slurmctld.out" 2>&1 & echo $! > "$d/slurmctld.bgpid"
  /usr/sbin/slurmd -D -f "$SLURM_CONF" > "$d/slurmd.out" 2>&1 & echo $! > "$d/slurmd.bgpid"
  for _ in $(seq 1 60); do
    [ "$(sinfo -h -o %t 2>/dev/null)" = "idle" ] && return 0
    sleep 1
  done
  echo "slurm did not come up; logs:" >&2; tail -n 20 "$d"/slurmctld.log "$d"/slurmd.log "$d"/slurmctld.out "$d"/slurmd.out >&2
  return 1
}

slurm_down() {
  local d=$1 f
  for f in slurmd slurmctld; do [ -f "$d/$f.bgpid" ] && kill "$(cat "$d/$f.bgpid")" 2>/dev/null; done
  [ -f "$d/munge/munged.pid" ] && kill "$(cat "$d/munge/munged.pid")" 2>/dev/null
  for f in slurmd slurmctld; do [ -f "$d/$f.bgpid" ] && wait "$(cat "$d/$f.bgpid")" 2>/dev/null; done
  return 0
}
