#!/usr/bin/env bash
# start-local-slurm.sh — a one-node Slurm cluster on loopback for CI (Debian 12, run as root).
# No systemd needed: daemons are started directly and found again through their pid files.
#
#   start-local-slurm.sh [start]   install (if missing), configure, start; wait until the node is idle
#   start-local-slurm.sh stop      stop every daemon this script starts (by pid file), keep packages/state
#   start-local-slurm.sh status    print daemon pids and sinfo; exit 0 only if slurmctld answers a ping
#   start-local-slurm.sh smoke     srun + a 4-task array job; prints SMOKE OK (about 2 s)
#   start-local-slurm.sh restart   stop, then start
#
# Used by robust_darts' Slurm tests (tests/test_slurm.py) and .ci/slurm.sh; recipe and pitfalls in
# ../shared/docs/TOOLING.md part 2. Writes the standard system locations (/etc/slurm, /etc/munge,
# /var/spool/slurm*, /var/log/slurm, /run); nothing in the checkout.
#
# Environment knobs:
#   SLURM_ACCOUNTING=1   1: also run MariaDB + slurmdbd so `sacct` works (submitit uses sacct to see
#                        jobs that died without a result: cancelled, timed out, OOM). 0: no database;
#                        sacct then fails with "Slurm accounting storage is disabled".
#   SLURM_NODE_CPUS=     CPUs to advertise (default: real count). More than the real count runs more
#                        array tasks at once (SlurmdParameters=config_overrides is set for that).
#   SLURM_KEEP_JOBS=0    1: keep jobs recovered from an earlier run when slurmctld was down (default:
#                        cancel them, Slurm would otherwise requeue and rerun them)
#   SLURM_PARTITION=debug   SLURM_CLUSTER=localci   SLURM_WAIT_S=60
#   SLURM_URGENT=urgent  a second partition on the same node, higher PriorityTier: its jobs preempt those of
#                        $SLURM_PARTITION (PreemptType=preempt/partition_prio, PreemptMode=REQUEUE: SIGTERM, then
#                        SIGKILL after KillWait, then Slurm requeues the job), as on clusters with a preemptible
#                        partition; tests/test_slurm.py uses it to preempt a run for real
set -euo pipefail

ACCOUNTING=${SLURM_ACCOUNTING:-1}
PARTITION=${SLURM_PARTITION:-debug}
URGENT=${SLURM_URGENT:-urgent}
CLUSTER=${SLURM_CLUSTER:-localci}
WAIT_S=${SLURM_WAIT_S:-60}
NODE=localhost                  # hostname-independent: slurmctld accepts SlurmctldHost=localhost,
                                # slurmd is started with -N localhost
CONF=/etc/slurm/slurm.conf
DBDCONF=/etc/slurm/slurmdbd.conf
LOGDIR=/var/log/slurm
DBPASS=slurmci                  # loopback-only database, socket access only (--skip-networking)

log() { echo "[local-slurm] $*" >&2; }
alive() {  # alive PIDFILE NAME: pid file names a live (not zombie) process called NAME
  [ -s "$1" ] || return 1
  local st; st=$(ps -o stat=,comm= -p "$(cat "$1")" 2>/dev/null) || return 1
  [ "${st#Z}" = "$st" ] && [ "${st##* }" = "$2" ]
}
wait_for() {  # wait_for SECONDS DESCRIPTION CMD...
  local t=$1 what=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then log "timeout waiting for $what"; return 1; fi
    sleep 0.2
  done
}
launch() {  # launch CMD...: run a daemon without the caller's extra fds (a CI runner's pipes would
  (         # otherwise stay open in munged/mariadbd/slurmdbd, which don't close them themselves)
    me=$BASHPID
    for fd in $(ls /proc/"$me"/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done 2>/dev/null
    exec "$@" </dev/null
  )
}
stop_pidfile() {  # stop_pidfile PIDFILE NAME; also removes a stale pid file (slurmctld and
  local pf=$1 name=$2 pid   # slurmdbd leave theirs behind, and a stale /run/slurmctld.pid makes
  if alive "$pf" "$name"; then   # `apt-get remove slurmctld` fail in its prerm)
    pid=$(cat "$pf"); log "stopping $name (pid $pid)"; kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not exit after 10s; sending KILL"; kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pf"
}

do_install() {
  local pkgs="slurmctld slurmd slurm-client munge" missing=""
  [ "$ACCOUNTING" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
  for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    log "installing:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
}

write_conf() {
  local real cpus mem topo tmp changed=1
  real=$(slurmd -C | head -1)          # NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$real")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$real")
  mem=$((mem * 90 / 100))              # leave headroom; configured > real would drain the node
  if [ -n "${SLURM_NODE_CPUS:-}" ] && [ "$SLURM_NODE_CPUS" != "$cpus" ]; then
    cpus=$SLURM_NODE_CPUS; topo="CPUs=$cpus"
  else
    topo=$(sed -e 's/^NodeName=[^ ]* //' -e 's/ *RealMemory=.*//' <<<"$real")
  fi
  mkdir -p /etc/slurm
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
# generated by start-local-slurm.sh
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
$(if [ "$ACCOUNTING" = 1 ]; then
  echo "AccountingStorageType=accounting_storage/slurmdbd"
  echo "AccountingStorageHost=localhost"
  echo "AccountingStoragePort=6819"
else
  echo "AccountingStorageType=accounting_storage/none"
  echo "JobCompType=jobcomp/filetxt"
  echo "JobCompLoc=$LOGDIR/jobcomp.log"
fi)
EnforcePartLimits=ALL
MinJobAge=300
MaxArraySize=10001
InactiveLimit=0
KillWait=5
Waittime=0
SlurmctldTimeout=300
SlurmdTimeout=300   # shared, overloaded CI machines: a starved slurmd must not turn into NODE_FAIL
NodeName=$NODE NodeAddr=127.0.0.1 $topo RealMemory=$mem State=UNKNOWN
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=$URGENT Nodes=$NODE MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
EOF
  if [ -f "$CONF" ] && cmp -s "$tmp" "$CONF"; then changed=0; fi
  install -m 644 "$tmp" "$CONF"; rm -f "$tmp"
  echo $changed
}

start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then
    log "creating munge key"; mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
  chown -R munge:munge /etc/munge; chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge; chmod 755 /run/munge
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    launch runuser -u munge -- /usr/sbin/munged --force
    wait_for 10 munged sh -c 'munge -n | unmunge'
  fi
}

start_db() {
  [ "$ACCOUNTING" = 1 ] || return 0
  mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
  if ! mariadb -e 'select 1' >/dev/null 2>&1; then
    log "starting mariadbd"
    launch setsid /usr/sbin/mariadbd --user=mysql --skip-networking \
      --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid \
      --innodb-buffer-pool-size=64M >"$LOGDIR/mariadb.log" 2>&1 &
    wait_for 60 mariadb mariadb -e 'select 1'
  fi
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  cat >"$DBDCONF" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=slurm
DebugLevel=info
LogFile=$LOGDIR/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
EOF
  chown slurm:slurm "$DBDCONF"; chmod 600 "$DBDCONF"   # slurmdbd refuses a world-readable file
  if ! alive /run/slurmdbd.pid slurmdbd; then
    log "starting slurmdbd"; launch /usr/sbin/slurmdbd
  fi
  wait_for 60 slurmdbd sacctmgr -n list cluster
}

do_start() {
  [ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
  local t0=$SECONDS changed
  do_install
  mkdir -p /var/spool/slurmctld /var/spool/slurmd "$LOGDIR"
  chown slurm:slurm /var/spool/slurmctld "$LOGDIR"
  changed=$(write_conf)
  start_munge
  start_db
  if [ "$changed" = 1 ] && { alive /run/slurmctld.pid slurmctld || alive /run/slurmd.pid slurmd; }; then
    log "slurm.conf changed: restarting slurmctld and slurmd"
    stop_pidfile /run/slurmd.pid slurmd; stop_pidfile /run/slurmctld.pid slurmctld
  fi
  local cold=0
  if ! alive /run/slurmctld.pid slurmctld; then log "starting slurmctld"; launch /usr/sbin/slurmctld; cold=1; fi
  wait_for "$WAIT_S" slurmctld scontrol ping
  if ! alive /run/slurmd.pid slurmd; then log "starting slurmd"; launch /usr/sbin/slurmd -N "$NODE"; fi
  local end=$((SECONDS + WAIT_S)) st
  while :; do
    st=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
    case "$st" in
      idle|mixed|allocated) break ;;
      *drain*|down*|*fail*|inval*)   # left over from an earlier run: put it back
        scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
    esac
    [ $SECONDS -ge $end ] && { log "node not idle after ${WAIT_S}s (state '$st')"; tail -20 "$LOGDIR"/slurm*.log >&2; exit 1; }
    sleep 0.2
  done
  if [ "$cold" = 1 ] && [ "${SLURM_KEEP_JOBS:-0}" != 1 ] && [ -n "$(squeue -h -o %i)" ]; then
    # jobs recovered from StateSaveLocation belong to an earlier run (e.g. the machine was stopped abruptly);
    # Slurm would requeue and rerun them. Cancel only now that slurmd is registered, so that it
    # also kills their leftover slurmstepd processes.
    log "cancelling jobs left over from an earlier run: $(squeue -h -o %i | tr '\n' ' ')"
    scancel --state=PENDING 2>/dev/null || true; scancel --state=RUNNING 2>/dev/null || true
    wait_for 30 "left-over jobs to end" sh -c '[ -z "$(squeue -h -o %i)" ]' || true
  fi
  log "ready in $((SECONDS - t0))s (accounting=$ACCOUNTING)"
  sinfo
}

do_stop() {
  if alive /run/slurmctld.pid slurmctld; then   # ctld + slurmd, saving state; then wait for both
    scontrol shutdown >/dev/null 2>&1 || true
    for _ in $(seq 1 50); do alive /run/slurmctld.pid slurmctld || alive /run/slurmd.pid slurmd || break; sleep 0.1; done
  fi
  stop_pidfile /run/slurmd.pid slurmd
  stop_pidfile /run/slurmctld.pid slurmctld
  stop_pidfile /run/slurmdbd.pid slurmdbd
  stop_pidfile /run/mysqld/mysqld.pid mariadbd
  stop_pidfile /run/munge/munged.pid munged
  log "stopped"
}

do_status() {
  local d
  for d in munged:/run/munge/munged.pid mariadbd:/run/mysqld/mysqld.pid slurmdbd:/run/slurmdbd.pid \
           slurmctld:/run/slurmctld.pid slurmd:/run/slurmd.pid; do
    if alive "${d#*:}" "${d%%:*}"; then echo "${d%%:*} running (pid $(cat "${d#*:}"))"; else echo "${d%%:*} stopped"; fi
  done
  sinfo 2>/dev/null || true
  scontrol ping >/dev/null 2>&1
}

do_smoke() {  # the smoke test of TOOLING.md section 19, in a throw-away folder
  local d jid end; d=$(mktemp -d); cd "$d"
  srun -t 1 hostname >/dev/null
  jid=$(sbatch --parsable -t 1 --array=0-3 -o 'a-%A_%a.out' --wrap 'echo task=$SLURM_ARRAY_TASK_ID')
  end=$((SECONDS + 60))
  while squeue -h -j "$jid" 2>/dev/null | grep -q .; do
    [ $SECONDS -ge $end ] && { log "smoke: array job $jid still queued after 60s"; squeue >&2; return 1; }
    sleep 0.2
  done
  if [ "$(cat a-"$jid"_*.out 2>/dev/null | wc -l)" = 4 ]; then echo "SMOKE OK"; cd /; rm -rf "$d"
  else log "smoke: expected 4 output lines in $d"; return 1; fi
}

case "${1:-start}" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  smoke) do_smoke ;;
  restart) do_stop; do_start ;;
  *) echo "usage: $0 [start|stop|status|smoke|restart]" >&2; exit 2 ;;
esac
