#!/usr/bin/env bash
# A one-node SLURM cluster on this machine (munged, slurmctld, slurmd from Debian's packages), for CI and for
# trying `hydra/launcher=slurm` before a real cluster:
#   bash scripts/slurm_one_node.sh            # installs slurm-wlm + munge if missing, starts, waits for an idle node
#   bash scripts/slurm_one_node.sh --stop     # stops the daemons this script started
# Running it again is cheap: a healthy cluster with the same slurm.conf is left alone; a stale one (a daemon
# gone, the node down, the config changed) is restarted with a clean job state. Needs root (or sudo).
#
# Why these settings (slurm.conf(5)): a container has neither systemd nor a writable cgroup tree, so processes
# are tracked through /proc (proctrack/linuxproc) and not confined (task/none); cores and memory are the
# consumable resources (cons_tres + CR_Core_Memory), so `--mem`/`--cpus-per-task` are honoured and two cells
# can share the node; there is no slurmdbd (accounting off); JobRequeue=1 lets `scontrol requeue` and
# preemption put a job back in the queue; KillWait is the grace between SIGTERM and SIGKILL that a training
# run uses to save its checkpoint and flush W&B.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by medtune scripts/slurm_one_node.sh"
PARTITION="${SLURM_PARTITION:-debug}"
KILL_WAIT="${SLURM_KILL_WAIT:-60}"   # seconds from SIGTERM to SIGKILL
READY_TIMEOUT_S=60
RUN=/run/slurm
STATE=/var/lib/slurm
LOGS=/var/log/slurm

say() { echo "slurm_one_node: $*"; }
die() { echo "slurm_one_node: error: $*" >&2; exit 1; }
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
      && command -v sinfo >/dev/null; then
    return
  fi
  say "installing slurm-wlm and munge (Debian packages)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq slurm-wlm munge >/dev/null
}

# The cluster's whole configuration; compared with the file in place to decide whether a restart is needed.
render_conf() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  # What slurmd itself measures, so the node never registers with less memory than configured (it would drain).
  mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  cat <<EOF
$MARK; edit the script, not this file
ClusterName=medtune
SlurmctldHost=$host
SlurmUser=slurm
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
JobRequeue=1
KillWait=$KILL_WAIT
ReturnToService=2
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

# pid from a pid file, if that process is alive and is the named daemon.
live_pid() {
  local file=$1 name=$2 pid
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] && echo "$pid"
}

stop_daemon() {
  local file=$1 name=$2 pid
  if pid=$(live_pid "$file" "$name"); then
    $SUDO kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && $SUDO kill -9 "$pid"
  fi
  $SUDO rm -f "$file"
}

stop_all() {
  stop_daemon "$RUN/slurmd.pid" slurmd
  stop_daemon "$RUN/slurmctld.pid" slurmctld
  stop_daemon /run/munge/munged.pid munged
}

node_state() { sinfo -h -N -o %t 2>/dev/null | head -n1; }

healthy() {
  live_pid "$RUN/slurmctld.pid" slurmctld >/dev/null && live_pid "$RUN/slurmd.pid" slurmd >/dev/null \
    && live_pid /run/munge/munged.pid munged >/dev/null \
    && [[ "$(node_state)" =~ ^(idle|mix|alloc|comp)$ ]]
}

start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    $SUDO mungekey --create --keyfile=/etc/munge/munge.key
  fi
  $SUDO chown munge:munge /etc/munge/munge.key
  $SUDO chmod 600 /etc/munge/munge.key
  $SUDO install -d -o munge -g munge -m 755 /run/munge
  $SUDO install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
  $SUDO runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
}

start_slurm() {
  $SUDO install -d -o slurm -g slurm -m 755 "$RUN" "$STATE/slurmctld" "$LOGS"
  $SUDO install -d -m 755 "$STATE/slurmd"
  $SUDO slurmctld -c   # -c: a clean job state, so jobs of an earlier cluster are not recovered
  $SUDO slurmd
}

wait_until_idle() {
  local start=$SECONDS state=""
  while (( SECONDS - start < READY_TIMEOUT_S )); do
    state=$(node_state)
    [ "$state" = idle ] && return
    sleep 0.5
  done
  die "node not idle after ${READY_TIMEOUT_S}s (sinfo says '${state:-no answer}'); see $LOGS/slurmctld.log and $LOGS/slurmd.log"
}

main() {
  if [ "${1:-}" = --stop ]; then
    stop_all
    say "stopped"
    return
  fi
  install_packages
  local wanted
  wanted=$(render_conf)
  if [ -f "$CONF" ] && ! head -n1 "$CONF" | grep -qF "$MARK"; then
    die "$CONF exists and was not written by this script: this machine has its own SLURM set-up; use that one"
  fi
  if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$wanted" ] && healthy; then
    say "already running: $(sinfo -h -N -o '%N %t %c CPUs %m MB, partition %P')"
    return
  fi
  stop_all
  printf '%s\n' "$wanted" | $SUDO tee "$CONF" >/dev/null
  start_munge
  start_slurm
  wait_until_idle
  say "ready: $(sinfo -h -N -o '%N %t %c CPUs %m MB, partition %P')"
}

main "$@"
