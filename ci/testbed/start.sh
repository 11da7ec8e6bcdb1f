#!/usr/bin/env bash
# Start a real SLURM cluster on this machine (+ Torque/PBS-style qsub/qstat/qdel): the machine
# itself is node <hostname -s> (partition `debug`, the default, on loopback), and TESTBED_NODES
# more nodes hpcw-n1..N (partition `multi`) each run their own slurmd in their own network
# namespace with their own address on a private bridge (hpcwbr0, 10.213.47.0/24), so that a
# run's workers really are on different hosts as far as the network is concerned, and a node can
# be lost (its slurmd killed, or set DOWN) while the others go on. Jobs on those nodes reach the
# machine's services at 10.213.47.1 (give Dask `interface: hpcwbr0`).
#
# Idempotent: safe when the cluster is already up (it then only checks that the node answers).
# Daemons this script starts are recorded in $STATE_DIR/started so ci/testbed/stop.sh stops
# those and nothing else. See shared/research/hpc-testbed.md for why each setting is here.
#
# Environment:
#   TESTBED_CPUS   CPUs advertised to SLURM (default 8: more than the physical cores, so that
#                  several 1-core Dask worker jobs run at once on a 2-core machine).
#   TESTBED_WAIT   seconds to wait for the node to become usable (default 60).
#   TESTBED_NODES  extra nodes in network namespaces (default 3; 0: the machine only).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE_DIR=/run/hpc-workflows-testbed
SPOOL_DIR=/var/spool/hpc-workflows-testbed
LOG_DIR=/var/log/hpc-workflows-testbed
SLURM_CONF=/etc/slurm/slurm.conf
PLUGSTACK_D=/etc/slurm/plugstack.conf.d
CPUS="${TESTBED_CPUS:-8}"
WAIT="${TESTBED_WAIT:-60}"
NODES="${TESTBED_NODES:-3}"
BRIDGE=hpcwbr0
NET_PREFIX=10.213.47
CTL_ADDR=127.0.0.1

log() { echo "testbed: $*"; }
die() { echo "testbed: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it starts munged, slurmctld and slurmd)"

# 1. Packages (the project's list; only installs what is missing).
if ! command -v slurmctld >/dev/null || ! command -v qsub >/dev/null || ! command -v munged >/dev/null \
        || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
    bash "$HERE/../install-system-packages.sh"
fi

mkdir -p "$STATE_DIR" "$SPOOL_DIR/ctld" "$SPOOL_DIR/d" "$LOG_DIR"
# One start/stop at a time (CI and a developer, or two test sessions, may race).
mkdir -p "$STATE_DIR"
exec 9>"$STATE_DIR/lock"
flock -w 600 9 || { echo "testbed: lock busy" >&2; exit 1; }
touch "$STATE_DIR/started"

is_running() {  # pidfile -> 0 when the process named in it is alive
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}
record() {  # name pid: remember that we started it (stop.sh reads this)
    grep -v "^$1 " "$STATE_DIR/started" > "$STATE_DIR/started.new" || true
    echo "$1 $2" >> "$STATE_DIR/started.new"
    mv "$STATE_DIR/started.new" "$STATE_DIR/started"
}
wait_for() {  # description seconds command... : poll until the command succeeds
    local what="$1" secs="$2"; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

# 1b. The extra nodes' network: a bridge on this machine, and per node a network namespace
#     joined to it by a veth pair. Only addresses on this machine: nothing leaves it.
node_ns() { echo "hpcw-n$1"; }
if [ "$NODES" -gt 0 ]; then
    command -v ip >/dev/null || die "ip (iproute2) is needed for the extra nodes (or set TESTBED_NODES=0)"
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
        ip addr add "$NET_PREFIX.1/24" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
    for i in $(seq 1 "$NODES"); do
        ns="$(node_ns "$i")"
        ip netns list | grep -qw "$ns" || ip netns add "$ns"
        if ! ip link show "hpcwv$i" >/dev/null 2>&1; then
            ip link add "hpcwv$i" type veth peer name eth0 netns "$ns"
            ip netns exec "$ns" ip addr add "$NET_PREFIX.$((10 + i))/24" dev eth0
        fi
        ip link set "hpcwv$i" master "$BRIDGE" up
        ip netns exec "$ns" ip link set eth0 up
        ip netns exec "$ns" ip link set lo up
    done
    # slurmd in a namespace must reach slurmctld, which listens on every address of the machine.
    CTL_ADDR="$NET_PREFIX.1"
fi
EXTRA_NODES=""
if [ "$NODES" -gt 0 ]; then
    for i in $(seq 1 "$NODES"); do
        EXTRA_NODES+="NodeName=$(node_ns "$i") NodeAddr=$NET_PREFIX.$((10 + i)) CPUs=2 RealMemory=4096 State=UNKNOWN"$'\n'
    done
    EXTRA_NODES+="PartitionName=multi Nodes=hpcw-n[1-$NODES] MaxTime=INFINITE State=UP"
fi

# 2. slurm.conf for this host. Rewritten only when it differs; daemons that we started are then
#    restarted because `scontrol reconfigure` refuses CPU changes.
HOST="$(hostname -s)"
MEM_MB=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 1024 ))
NEW_CONF="$(cat <<EOF
# Written by hpc_workflows ci/testbed/start.sh: this machine on loopback + nodes in netns.
ClusterName=hpcwf-testbed
SlurmctldHost=${HOST}(${CTL_ADDR})
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# Accounting (sacct, MaxRSS, CPU efficiency) through slurmdbd + MariaDB, started below;
# enforcing associations makes an unknown --account a refusal at submission, as on real sites.
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=5
# Kill a step over its --mem (TaskPlugin=task/none: no cgroup does it here), as sites' cgroups do:
# sacct then says OUT_OF_MEMORY, which tests of the failure classes need.
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
# Each user sees only their own jobs, usage and accounts (squeue, scontrol, sacct), as on
# shared production clusters: job names, command lines and paths are not for other users.
PrivateData=accounts,jobs,reservations,usage,users
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job without --mem takes the whole node and blocks every other job.
DefMemPerCPU=1000
ReturnToService=2
# Advertise more CPUs than the machine has so several 1-core worker jobs run at once.
SlurmdParameters=config_overrides
SchedulerParameters=sched_interval=2
MinJobAge=60
KillWait=5
StateSaveLocation=${SPOOL_DIR}/ctld
SlurmdSpoolDir=${SPOOL_DIR}/d-%n
SlurmctldPidFile=${STATE_DIR}/slurmctld.pid
SlurmdPidFile=${STATE_DIR}/slurmd-%n.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd-%n.log
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
${EXTRA_NODES}
EOF
)"
conf_changed=0
if [ ! -f "$SLURM_CONF" ] || [ "$(cat "$SLURM_CONF")" != "$NEW_CONF" ]; then
    printf '%s\n' "$NEW_CONF" > "$SLURM_CONF.tmp" && mv "$SLURM_CONF.tmp" "$SLURM_CONF"
    conf_changed=1
    log "wrote $SLURM_CONF (CPUs=$CPUS, RealMemory=${MEM_MB}M)"
fi

# spank_pbs sets PBS_JOBID/PBS_O_WORKDIR inside jobs, as job scripts written for PBS expect.
SPANK_PBS="$(find /usr/lib -name spank_pbs.so -print -quit 2>/dev/null || true)"
if [ -n "$SPANK_PBS" ]; then
    mkdir -p "$PLUGSTACK_D"
    line="required $SPANK_PBS"
    if [ "$(cat "$PLUGSTACK_D/hpc-workflows-pbs.conf" 2>/dev/null)" != "$line" ]; then
        echo "$line" > "$PLUGSTACK_D/hpc-workflows-pbs.conf"
        conf_changed=1
    fi
fi

if [ "$conf_changed" -eq 1 ]; then
    # Only restart daemons we started; a foreign slurmctld/slurmd would be the admin's business.
    for d in $(awk '$1 ~ /^slurmd(-|$)/ {print $1}' "$STATE_DIR/started") slurmctld; do
        pid="$(awk -v n="$d" '$1==n {print $2}' "$STATE_DIR/started")"
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            log "config changed: restarting $d (pid $pid)"
            kill "$pid"
            wait_for "$d exit" 20 bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
        fi
    done
fi

# 3. munged (as the munge user; the package created the key).
if ! pgrep -x munged >/dev/null; then
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged 9>&-  # daemons must not inherit (and hold) the lock
    wait_for munged 10 test -S /run/munge/munge.socket.2 || die "munged did not start"
    record munged "$(cat /run/munge/munged.pid)"
    log "started munged (pid $(cat /run/munge/munged.pid))"
fi

# 3b. MariaDB for slurmdbd: our own data directory, unix socket only (no TCP port another user
#     could reach), root authenticated by unix_socket, so no password is stored anywhere.
#     Debian's packaged instance is not used: policy-rc.d blocks its start and its data dir
#     is the admin's.
DB_DIR="$SPOOL_DIR/mariadb"
DB_SOCK=/run/mysqld/mysqld.sock  # libmariadb's default: slurmdbd's StorageHost=localhost finds it
DB_PID=/run/mysqld/hpcw-mariadbd.pid
db_up() { mariadb --socket="$DB_SOCK" -N -e 'SELECT 1' >/dev/null 2>&1; }
if ! db_up; then
    mkdir -p /run/mysqld "$DB_DIR"
    chown mysql:mysql /run/mysqld "$DB_DIR"
    chmod 0700 "$DB_DIR"
    if [ ! -d "$DB_DIR/mysql" ]; then
        mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DIR" --skip-test-db \
            --auth-root-authentication-method=socket >"$LOG_DIR/mariadb-install.log" 2>&1 \
            || die "mariadb-install-db failed; see $LOG_DIR/mariadb-install.log"
    fi
    # innodb_lock_wait_timeout as slurmdbd's docs ask; a small buffer pool: a 2-core test box.
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$DB_DIR" --socket="$DB_SOCK" \
        --pid-file="$DB_PID" --skip-networking --log-error="$LOG_DIR/mariadb.log" \
        --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 \
        </dev/null >/dev/null 2>&1 9>&- &
    wait_for mariadb 60 db_up || die "mariadb did not start; see $LOG_DIR/mariadb.log"
    record mariadbd "$(cat "$DB_PID")"
    log "started mariadbd (pid $(cat "$DB_PID"))"
fi

# 3c. slurmdbd (root, like SlurmUser; its config holds no password: unix_socket auth).
SLURMDBD_CONF=/etc/slurm/slurmdbd.conf
NEW_DBD_CONF="$(cat <<EOF
# Written by hpc_workflows ci/testbed/start.sh.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=${STATE_DIR}/slurmdbd.pid
LogFile=${LOG_DIR}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=hpcwf_slurm_acct_db
# The same privacy for what slurmdbd answers (sacct -a, sreport, sacctmgr show).
PrivateData=accounts,jobs,reservations,usage,users
EOF
)"
dbd_conf_changed=0
if [ ! -f "$SLURMDBD_CONF" ] || [ "$(cat "$SLURMDBD_CONF")" != "$NEW_DBD_CONF" ]; then
    (umask 077; printf '%s\n' "$NEW_DBD_CONF" > "$SLURMDBD_CONF.tmp")
    mv "$SLURMDBD_CONF.tmp" "$SLURMDBD_CONF"  # slurmdbd refuses a config others can read
    dbd_conf_changed=1
fi
if [ "$dbd_conf_changed" -eq 1 ] && is_running "$STATE_DIR/slurmdbd.pid"; then
    pid="$(cat "$STATE_DIR/slurmdbd.pid")"
    kill "$pid"; wait_for "slurmdbd exit" 20 bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
fi
if ! is_running "$STATE_DIR/slurmdbd.pid" && ! pgrep -x slurmdbd >/dev/null; then
    /usr/sbin/slurmdbd 9>&-
    wait_for slurmdbd 30 is_running "$STATE_DIR/slurmdbd.pid" || die "slurmdbd did not start; see $LOG_DIR/slurmdbd.log"
    record slurmdbd "$(cat "$STATE_DIR/slurmdbd.pid")"
    log "started slurmdbd (pid $(cat "$STATE_DIR/slurmdbd.pid"))"
fi
# The cluster, an account, and associations for root and the security tests' second user
# (tests/second_user.py): with AccountingStorageEnforce=associations nobody else may submit.
wait_for "slurmdbd answers" 30 sacctmgr -n show cluster || die "slurmdbd does not answer; see $LOG_DIR/slurmdbd.log"
ACCT_CLUSTER=hpcwf-testbed
ACCT_ACCOUNT=hpcw
ACCT_USERS="root ${HPCW_OTHER_USER:-hpcw-other}"
sacctmgr -n -P show cluster format=cluster | grep -qx "$ACCT_CLUSTER" \
    || sacctmgr -i add cluster "$ACCT_CLUSTER" >/dev/null
sacctmgr -n -P show account format=account | grep -qx "$ACCT_ACCOUNT" \
    || sacctmgr -i add account "$ACCT_ACCOUNT" Cluster="$ACCT_CLUSTER" \
        Description="hpc_workflows testbed" Organization=hpcw >/dev/null
for u in $ACCT_USERS; do
    sacctmgr -n -P show assoc cluster="$ACCT_CLUSTER" account="$ACCT_ACCOUNT" user="$u" format=user \
        | grep -qx "$u" \
        || sacctmgr -i add user "$u" Account="$ACCT_ACCOUNT" DefaultAccount="$ACCT_ACCOUNT" \
            Cluster="$ACCT_CLUSTER" >/dev/null
done

# 4. slurmctld then slurmd (daemonise themselves and write their pid files).
if ! is_running "$STATE_DIR/slurmctld.pid" && ! pgrep -x slurmctld >/dev/null; then
    /usr/sbin/slurmctld 9>&-
    wait_for slurmctld 20 is_running "$STATE_DIR/slurmctld.pid" || die "slurmctld did not start; see $LOG_DIR/slurmctld.log"
    record slurmctld "$(cat "$STATE_DIR/slurmctld.pid")"
    log "started slurmctld (pid $(cat "$STATE_DIR/slurmctld.pid"))"
fi
start_slurmd() {  # node [netns]: one slurmd per node, each with its own pid file and spool
    local node="$1" ns="${2:-}" pidfile="$STATE_DIR/slurmd-$1.pid"
    is_running "$pidfile" && return 0
    if [ -n "$ns" ]; then
        # nsenter, not `ip netns exec`: that remounts /sys, and slurmd then finds no cgroup fs.
        nsenter --net="/run/netns/$ns" /usr/sbin/slurmd -N "$node" 9>&-
    else
        /usr/sbin/slurmd -N "$node" 9>&-
    fi
    wait_for "slurmd $node" 20 is_running "$pidfile" || die "slurmd $node did not start; see $LOG_DIR/slurmd-$node.log"
    record "slurmd-$node" "$(cat "$pidfile")"
    log "started slurmd for $node (pid $(cat "$pidfile"))"
}
start_slurmd "$HOST"
for i in $(seq 1 "$NODES"); do
    start_slurmd "$(node_ns "$i")" "$(node_ns "$i")"
done

# 5. Wait until the node accepts work (idle, or mixed/allocated when jobs already run).
node_usable() {
    state="$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n1)"
    case "$state" in
        idle|mixed|allocated|completing) return 0 ;;
        down*|drain*|fail*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true; return 1 ;;
        *) return 1 ;;
    esac
}
wait_for "node $HOST usable" "$WAIT" node_usable \
    || die "node $HOST not usable after ${WAIT}s (sinfo: $(sinfo -h -o '%T %E' 2>&1)); see $LOG_DIR"
for i in $(seq 1 "$NODES"); do
    HOST="$(node_ns "$i")"
    wait_for "node $HOST usable" "$WAIT" node_usable \
        || die "node $HOST not usable after ${WAIT}s (sinfo: $(sinfo -h -o '%N %T %E' 2>&1)); see $LOG_DIR"
done
log "ready: $(sinfo -h -o '%P %D %T %c CPUs')"
