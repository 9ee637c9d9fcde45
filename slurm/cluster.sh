#!/usr/bin/env bash
# slurm/cluster.sh - a real single-node SLURM cluster on one Debian bookworm machine,
# for rlhp's tests and for trying rlhp's SLURM path without a cluster.
#
#   cluster.sh start    install packages (if missing) + write configs + start daemons + wait for an idle node
#   cluster.sh stop     cancel all jobs, then stop the daemons this script started (by PID file)
#   cluster.sh restart  stop + start
#   cluster.sh status   daemon PIDs + sinfo (exit 1 if a daemon is not running)
#   cluster.sh env      print "export SLURM_CONF=..."   (use: eval "$(slurm/cluster.sh env)")
#
# start/stop/restart must run as root. Everything (configs, state, logs, munge key and
# socket, MariaDB data) lives under $SLURM_LOCAL_PREFIX; only apt writes to system locations.
# `start` is idempotent: daemons already running are kept, changed configs restart the
# affected daemons, and a node left DOWN/DRAINED by an earlier run is resumed.
#
# Knobs (environment variables):
#   SLURM_LOCAL_PREFIX      default /tmp/rlhp-slurm
#   SLURM_LOCAL_CPUS        CPUs advertised to Slurm (default: the real count). May exceed the
#                           real count (SlurmdParameters=config_overrides), e.g. 8 on a 2-core
#                           machine so that 8 single-CPU jobs run at once.
#   SLURM_LOCAL_MEM_MB      RealMemory advertised in MB (default: physical memory - 1024)
#   SLURM_LOCAL_DEF_MEM_MB  DefMemPerCPU in MB, used when a job gives no --mem (default 1024)
#   SLURM_LOCAL_GPUS        number of FAKE gpus (gres gpu:fake, character devices aliasing /dev/null);
#                           jobs asking --gpus-per-node=N get CUDA_VISIBLE_DEVICES (default 0)
#   SLURM_LOCAL_ACCOUNTING  1 (default): MariaDB + slurmdbd, so that `sacct` works
#                           (submitit needs sacct to notice cancelled or killed jobs).
#                           0: no accounting (faster first start, fewer packages).
#   SLURM_LOCAL_PARTITION   partition name (default debug)
#   SLURM_LOCAL_CLEAN       1: start from a clean state: cancel jobs, wipe slurmctld/slurmd
#                           state and the job records in the accounting DB. Job ids restart at 1.
#   SLURM_LOCAL_DB_PORT     MariaDB TCP port on 127.0.0.1 (default 3307)
#   SLURM_LOCAL_CRED_EXPIRE job credential lifetime in s (AuthInfo=cred_expire, default 10);
#                           a requeued job becomes eligible again after this + 1 s
set -euo pipefail

PREFIX=${SLURM_LOCAL_PREFIX:-/tmp/rlhp-slurm}
PARTITION=${SLURM_LOCAL_PARTITION:-debug}
ACCOUNTING=${SLURM_LOCAL_ACCOUNTING:-1}
GPUS=${SLURM_LOCAL_GPUS:-0}
DEF_MEM=${SLURM_LOCAL_DEF_MEM_MB:-1024}
DB_PORT=${SLURM_LOCAL_DB_PORT:-3307}
CLEAN=${SLURM_LOCAL_CLEAN:-0}
CRED_EXPIRE=${SLURM_LOCAL_CRED_EXPIRE:-10}
CLUSTER=localcluster

ETC=$PREFIX/etc
RUN=$PREFIX/run
LOG=$PREFIX/log
STATE=$PREFIX/state
MUNGE_DIR=$PREFIX/munge
MUNGE_SOCK=$MUNGE_DIR/munge.socket.2
DB_DIR=$PREFIX/db
DB_SOCK=$DB_DIR/mysqld.sock
export SLURM_CONF=$ETC/slurm.conf

log() { printf '[cluster.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }

# ---------------------------------------------------------------- packages
install_packages() {
    local pkgs=(munge slurmctld slurmd slurm-client) missing=() p
    if [ "$ACCOUNTING" = 1 ]; then pkgs+=(slurmdbd mariadb-server); fi
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >"$LOG/apt-update.log" 2>&1 \
        || { tail -20 "$LOG/apt-update.log" >&2; die "apt-get update failed"; }
    # Without systemd (containers, CI) the postinst scripts cannot start the services;
    # that is fine, this script starts its own daemons.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$LOG/apt-install.log" 2>&1 \
        || { tail -30 "$LOG/apt-install.log" >&2; die "apt-get install failed"; }
}

# ---------------------------------------------------------------- pid helpers
# $RUN/NAME.pid holds the PID of the process this script started; it is trusted only
# while /proc/PID/comm matches the expected command name.
proc_running() {  # pid -> true if it exists and is not a zombie
    local st
    st=$(awk '{print $3}' /proc/"$1"/stat 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

pid_alive() {  # name (the command name is the same as the name)
    local f=$RUN/$1.pid pid
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    proc_running "$pid" && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$1" ]
}

start_bg() {  # name cmd...   (cmd must stay in the foreground and exec into a process named NAME)
    local name=$1; shift
    if pid_alive "$name"; then log "$name already running (pid $(cat "$RUN/$name.pid"))"; return 0; fi
    nohup "$@" >>"$LOG/$name.out" 2>&1 </dev/null &
    echo $! >"$RUN/$name.pid"
    log "started $name (pid $!)"
}

stop_pid() {  # name
    local name=$1 pid
    if ! pid_alive "$name"; then rm -f "$RUN/$name.pid"; return 0; fi
    pid=$(cat "$RUN/$name.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do proc_running "$pid" || break; sleep 0.1; done
    if proc_running "$pid"; then
        log "$name (pid $pid) ignored SIGTERM for 15 s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do proc_running "$pid" || break; sleep 0.1; done
    fi
    rm -f "$RUN/$name.pid"
    log "stopped $name (pid $pid)"
}

daemon_log_tail() {  # name logfile...
    local name=$1 f; shift
    for f in "$LOG/$name.out" "$@"; do
        [ -s "$f" ] && { echo "--- tail $f" >&2; tail -15 "$f" >&2; }
    done
    return 0
}

wait_for() {  # seconds daemon-name description command...   (each probe is capped at 5 s)
    local secs=$1 name=$2 what=$3 end; shift 3
    end=$((SECONDS + secs))
    while [ $SECONDS -lt $end ]; do
        timeout 5 "$@" >/dev/null 2>&1 && return 0
        if [ -n "$name" ] && ! pid_alive "$name"; then
            daemon_log_tail "$name" "$LOG/$name.log"
            die "$name exited while waiting for $what (see $LOG)"
        fi
        sleep 0.1
    done
    [ -n "$name" ] && daemon_log_tail "$name" "$LOG/$name.log"
    die "timed out after ${secs}s waiting for $what"
}

# ---------------------------------------------------------------- configs
CHANGED=()   # config files that write_configs changed

write_configs() {
    local node hw cpus mem gres_line="" gres_types="" acct
    node=$(hostname -s)
    hw=$(slurmd -C | head -1)
    cpus=${SLURM_LOCAL_CPUS:-$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")}
    if [ -n "${SLURM_LOCAL_MEM_MB:-}" ]; then
        mem=$SLURM_LOCAL_MEM_MB
    else
        # leave 1 GB for the daemons (MariaDB, slurmctld, ...)
        mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
        mem=$((mem > 2048 ? mem - 1024 : mem))
    fi

    if [ "$GPUS" -gt 0 ]; then
        # Fake GPUs: gres/gpu in 22.05 drops GPUs without File= and complains when File= is
        # not a device node, so make character devices aliasing /dev/null (1,3).
        mkdir -p "$PREFIX/fakegpu"
        local i
        for i in $(seq 0 $((GPUS - 1))); do
            [ -e "$PREFIX/fakegpu/nvidia$i" ] || mknod "$PREFIX/fakegpu/nvidia$i" c 1 3 2>/dev/null \
                || touch "$PREFIX/fakegpu/nvidia$i"   # plain file: works, slurmd logs a non-fatal error
        done
        # typed (gpu:fake): --gres=gpu:fake:N and untyped --gpus-per-node=N both match
        gres_line=" Gres=gpu:fake:$GPUS"
        gres_types="GresTypes=gpu"
        # record GPUs in sacct's AllocTRES (slurmctld refuses this TRES without slurmdbd)
        [ "$ACCOUNTING" = 1 ] && gres_types+=$'\nAccountingStorageTRES=gres/gpu'
        cat >"$ETC/gres.conf.new" <<EOF
AutoDetect=off
NodeName=$node Name=gpu Type=fake File=$PREFIX/fakegpu/nvidia[0-$((GPUS - 1))]
EOF
    else
        : >"$ETC/gres.conf.new"
    fi

    if [ "$ACCOUNTING" = 1 ]; then
        acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStoragePass=$MUNGE_SOCK"
    else
        acct="AccountingStorageType=accounting_storage/none"
    fi

    cat >"$ETC/slurm.conf.new" <<EOF
# generated by rlhp slurm/cluster.sh - edits are overwritten on the next start
ClusterName=$CLUSTER
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again
# (default 120 s): 10 s keeps requeue/preemption tests fast.
AuthInfo=socket=$MUNGE_SOCK,cred_expire=$CRED_EXPIRE
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
$acct
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# start jobs right away; re-test pending jobs (e.g. requeued ones) every 2 s, not 30-60 s
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
# batch jobs may be requeued (scontrol requeue, submitit checkpointing)
JobRequeue=1
DefMemPerCPU=$DEF_MEM
KillWait=5
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$RUN/slurmctld.internal.pid
SlurmdPidFile=$RUN/slurmd.internal.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
$gres_types
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$node CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem$gres_line State=UNKNOWN
# preemption as many clusters have it: jobs of the 'urgent' partition (higher PriorityTier)
# preempt jobs of 'preemptible', which are requeued (SIGTERM, SIGKILL GraceTime s later);
# jobs of the default partition are never preempted.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=OFF
PartitionName=preemptible Nodes=$node MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=10
PartitionName=urgent Nodes=$node MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
EOF

    cat >"$ETC/slurmdbd.conf.new" <<EOF
# generated by rlhp slurm/cluster.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdHost=localhost
DbdPort=6819
SlurmUser=root
DebugLevel=info
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.internal.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
EOF
    local f
    CHANGED=()
    for f in slurm.conf gres.conf slurmdbd.conf; do
        if cmp -s "$ETC/$f.new" "$ETC/$f" 2>/dev/null; then
            rm -f "$ETC/$f.new"
        else
            mv "$ETC/$f.new" "$ETC/$f"; CHANGED+=("$f")
        fi
    done
    chmod 600 "$ETC/slurmdbd.conf"
    [ ${#CHANGED[@]} -gt 0 ] && log "wrote ${CHANGED[*]} in $ETC"
    echo "$node" >"$RUN/nodename"
}

changed() { local f; for f in "${CHANGED[@]}"; do [ "$f" = "$1" ] && return 0; done; return 1; }

# ---------------------------------------------------------------- daemons
start_munge() {
    install -d -o munge -g munge -m 0700 "$MUNGE_DIR"
    if [ ! -s "$MUNGE_DIR/munge.key" ]; then
        dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
        chown munge:munge "$MUNGE_DIR/munge.key"; chmod 0600 "$MUNGE_DIR/munge.key"
    fi
    chmod 0755 "$MUNGE_DIR"   # clients (any user) must reach the socket
    start_bg munged setpriv --reuid=munge --regid=munge --init-groups \
        /usr/sbin/munged -F --key-file="$MUNGE_DIR/munge.key" --socket="$MUNGE_SOCK" \
        --pid-file="$MUNGE_DIR/munged.pid" \
        --seed-file="$MUNGE_DIR/munged.seed"
    wait_for 15 munged "munged" sh -c "munge -S '$MUNGE_SOCK' -n | unmunge -S '$MUNGE_SOCK'"
}

db() { mariadb --no-defaults -S "$DB_SOCK" -uroot "$@"; }

start_mariadb() {
    mkdir -p "$DB_DIR"
    if [ ! -d "$DB_DIR/data/mysql" ]; then
        log "initialising MariaDB datadir"
        rm -rf "$DB_DIR/data"
        mariadb-install-db --no-defaults --datadir="$DB_DIR/data" --user=root \
            --auth-root-authentication-method=socket --skip-test-db >"$LOG/mariadb-install.log" 2>&1 \
            || { tail -20 "$LOG/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    start_bg mariadbd mariadbd --no-defaults --datadir="$DB_DIR/data" --user=root \
        --socket="$DB_SOCK" --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --pid-file="$RUN/mariadbd.internal.pid" --log-error="$LOG/mariadbd.log" \
        --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900 --innodb-log-file-size=64M
    wait_for 60 mariadbd "MariaDB" mariadb-admin --no-defaults -S "$DB_SOCK" -uroot ping
    db -e "
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmpw';
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

wipe_job_records() {  # delete job/step records of this cluster, so recycled job ids do not show old rows in sacct
    local t tables
    tables=$(db -N -B -e "SELECT table_name FROM information_schema.tables
        WHERE table_schema='slurm_acct_db' AND table_name IN
        ('${CLUSTER}_job_table','${CLUSTER}_step_table','${CLUSTER}_job_env_table','${CLUSTER}_job_script_table')" \
        2>/dev/null) || return 0
    for t in $tables; do db -e "DELETE FROM slurm_acct_db.\`$t\`"; done
    [ -n "$tables" ] && log "wiped job records in the accounting DB"
    return 0
}

nodename() { cat "$RUN/nodename"; }
node_state() { sinfo -h -n "$(nodename)" -o %T 2>/dev/null | head -1; }

cancel_all_jobs() {
    pid_alive slurmctld || return 0
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ' || true)
    [ -n "${jobs// /}" ] || return 0
    log "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 1 150); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.1; done
}

wait_node_ready() {
    local end=$((SECONDS + 60)) st last_resume=-10
    while [ $SECONDS -lt $end ]; do
        st=$(node_state || true)
        case "$st" in
            idle|mixed|allocated|completing) return 0 ;;
            *drain*|*down*|*fail*)
                # left DOWN/DRAINED by an earlier run (or not yet registered): resume it
                if [ $((SECONDS - last_resume)) -ge 2 ] && [ "${st%\*}" = "$st" ]; then
                    log "node is '$st', resuming it"
                    scontrol update nodename="$(nodename)" state=resume >/dev/null 2>&1 || true
                    last_resume=$SECONDS
                fi ;;
        esac
        pid_alive slurmd || { daemon_log_tail slurmd "$LOG/slurmd.log"; die "slurmd exited (see $LOG)"; }
        sleep 0.1
    done
    daemon_log_tail slurmd "$LOG/slurmd.log"
    die "node not idle after 60 s: $(sinfo -h -N -o '%N %T %E' 2>/dev/null)"
}

cmd_start() {
    need_root
    mkdir -p "$PREFIX" "$ETC" "$RUN" "$LOG" "$STATE/ctld" "$STATE/d"
    local t0=$SECONDS
    install_packages
    write_configs
    start_munge
    if [ "$ACCOUNTING" = 1 ]; then
        start_mariadb
        if changed slurmdbd.conf; then stop_pid slurmdbd; fi
        start_bg slurmdbd slurmdbd -D
        wait_for 60 slurmdbd "slurmdbd" sacctmgr -n show cluster
    fi
    # a changed slurm.conf/gres.conf or a clean start needs fresh slurmctld + slurmd
    if [ "$CLEAN" = 1 ] || changed slurm.conf || changed gres.conf; then
        if pid_alive slurmctld || pid_alive slurmd; then
            if [ "$CLEAN" = 1 ]; then cancel_all_jobs; else log "config changed: restarting slurmctld and slurmd"; fi
            stop_pid slurmd
            stop_pid slurmctld
        fi
    fi
    local ctld_flags=()
    if [ "$CLEAN" = 1 ]; then
        log "clean start: wiping job and node state (job ids restart at 1)"
        rm -rf "${STATE:?}/ctld" "${STATE:?}/d"; mkdir -p "$STATE/ctld" "$STATE/d"
        [ "$ACCOUNTING" = 1 ] && wipe_job_records
        ctld_flags=(-c)
    fi
    start_bg slurmctld slurmctld -D -i "${ctld_flags[@]}"
    wait_for 30 slurmctld "slurmctld" scontrol ping
    start_bg slurmd slurmd -D
    wait_node_ready
    log "cluster up in $((SECONDS - t0))s; use: export SLURM_CONF=$SLURM_CONF"
    sinfo >&2
}

cmd_stop() {
    need_root
    [ -d "$RUN" ] || { log "nothing to stop ($RUN does not exist)"; return 0; }
    cancel_all_jobs
    stop_pid slurmd
    stop_pid slurmctld
    stop_pid slurmdbd
    stop_pid mariadbd
    stop_pid munged
}

cmd_status() {
    local n rc=0
    for n in munged mariadbd slurmdbd slurmctld slurmd; do
        if [ "$n" = mariadbd ] || [ "$n" = slurmdbd ]; then [ "$ACCOUNTING" = 1 ] || continue; fi
        if pid_alive "$n"; then echo "$n running (pid $(cat "$RUN/$n.pid"))"; else echo "$n not running"; rc=1; fi
    done
    if [ $rc = 0 ]; then sinfo 2>/dev/null || true; fi
    return $rc
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop; cmd_start ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$SLURM_CONF" ;;
    *) echo "usage: $0 {start|stop|restart|status|env}" >&2; exit 2 ;;
esac
