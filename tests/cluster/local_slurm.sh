#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for `make test-cluster`: Debian's munge, slurmctld and slurmd,
# started without systemd. Idempotent: installs only missing packages, rewrites the config only when it
# changes, starts only daemons that do not answer. Needs root (it writes /etc/slurm and starts daemons).
#
# Accounting is off (no slurmdbd), so `sacct` knows no jobs: Snakemake's SLURM executor must poll with
# squeue (--slurm-status-command squeue), and squeue must remember finished jobs long enough, hence
# MinJobAge=3600. The node advertises 64 GB (SlurmdParameters=config_overrides) so that the rules' real
# memory requests (up to 32 GB for training) fit on a small test machine; the tiny demo uses far less.
set -euo pipefail

PARTITION="${SLURM_TEST_PARTITION:-local}"
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm

die() { echo "local_slurm.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root: it installs munge/slurm packages, writes $CONF_DIR and starts daemons."

install_missing_packages() {
  local missing=()
  for pkg in munge slurmctld slurmd slurm-client; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

slurm_conf() {
  local host hardware
  host="$(hostname -s)"
  # CPU layout as slurmd detects it (CPUs, sockets, cores, threads), memory raised as explained above.
  hardware="$(slurmd -C | head -1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')"
  cat <<EOF
# Written by tests/cluster/local_slurm.sh: a one-node test cluster (no accounting, no cgroups).
ClusterName=local
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=3600
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
SlurmdParameters=config_overrides
NodeName=${host} NodeAddr=127.0.0.1 ${hardware}RealMemory=64000 State=UNKNOWN
PartitionName=${PARTITION} Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
}

write_if_changed() {  # path, content: true when the file changed
  local path="$1" content="$2"
  if [ -f "$path" ] && [ "$(cat "$path")" = "$content" ]; then
    return 1
  fi
  printf '%s\n' "$content" > "$path.tmp" && mv "$path.tmp" "$path"
  return 0
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_daemon() {  # pid file of a daemon this script started
  if pid_alive "$1"; then
    kill "$(cat "$1")"
    for _ in $(seq 50); do pid_alive "$1" || return 0; sleep 0.2; done
    die "daemon with pid file $1 did not stop"
  fi
}

wait_for() {  # seconds, description, command...
  local seconds="$1" what="$2"; shift 2
  for _ in $(seq "$((seconds * 2))"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  die "$what did not come up within ${seconds}s; see ${LOG_DIR}/ and /var/log/munge/"
}

start_munge() {
  if munge -n </dev/null | unmunge >/dev/null 2>&1; then return; fi
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  if [ ! -s /etc/munge/munge.key ]; then
    install -d -o munge -g munge -m 0700 /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged
  wait_for 20 munged sh -c 'munge -n </dev/null | unmunge'
}

node_ready() { sinfo -h -N -p "$PARTITION" -o '%T' | grep -qE '^(idle|mixed|allocated)'; }

main() {
  install_missing_packages
  install -d -m 0755 "$CONF_DIR"
  install -d -o slurm -g slurm -m 0755 /var/spool/slurmctld "$LOG_DIR"
  install -d -m 0755 /var/spool/slurmd
  local changed=false
  if write_if_changed "$CONF_DIR/slurm.conf" "$(slurm_conf)"; then changed=true; fi
  start_munge
  if $changed; then
    echo "slurm.conf changed: (re)starting slurmctld and slurmd"
    stop_daemon /run/slurmd.pid
    stop_daemon /run/slurmctld.pid
  fi
  if ! scontrol ping 2>/dev/null | grep -q "is UP"; then
    stop_daemon /run/slurmctld.pid
    /usr/sbin/slurmctld || die "slurmctld did not start; see ${LOG_DIR}/slurmctld.log"
    wait_for 30 slurmctld sh -c 'scontrol ping | grep -q "is UP"'
  fi
  if ! pid_alive /run/slurmd.pid; then
    /usr/sbin/slurmd || die "slurmd did not start; see ${LOG_DIR}/slurmd.log"
  fi
  if ! node_ready; then
    # A node left DOWN/DRAIN by an earlier run (e.g. slurmd killed) is put back to work.
    scontrol update NodeName="$(hostname -s)" State=RESUME 2>/dev/null || true
  fi
  wait_for 60 "the node of partition $PARTITION" node_ready
  echo "SLURM is up: partition $PARTITION"
  sinfo -N -p "$PARTITION"
}

main "$@"
