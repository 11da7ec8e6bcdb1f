#!/usr/bin/env bash
# Stop the daemons that ci/testbed/start.sh started (and only those, by recorded PID).
# Jobs still queued on the testbed are cancelled first so no worker process outlives it.
set -euo pipefail

STATE_DIR=/run/hpc-workflows-testbed
STARTED="$STATE_DIR/started"
# One start/stop at a time (CI and a developer, or two test sessions, may race).
mkdir -p "$STATE_DIR"
exec 9>"$STATE_DIR/lock"
flock -w 600 9 || { echo "testbed: lock busy" >&2; exit 1; }

log() { echo "testbed: $*"; }

if [ ! -s "$STARTED" ]; then
    log "nothing recorded in $STARTED: nothing to stop"
    exit 0
fi

if grep -q '^slurmctld ' "$STARTED" && command -v scancel >/dev/null; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
fi

stop_pid() {  # name pid
    local name="$1" pid="$2" deadline
    if ! kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) already gone"; return
    fi
    # A recycled PID must not be killed: check the process is still the one we started.
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "${name%%-*}" ]; then  # slurmd-<node> is a slurmd
        log "pid $pid is no longer $name: left alone"; return
    fi
    kill "$pid"
    deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    log "stopped $name (pid $pid)"
}

# Reverse start order: the slurmd of every node, slurmctld, slurmdbd, mariadbd, munged.
for name in $(awk '$1 ~ /^slurmd(-|$)/ {print $1}' "$STARTED") slurmctld slurmdbd mariadbd munged; do
    pid="$(awk -v n="$name" '$1==n {print $2}' "$STARTED")"
    [ -n "$pid" ] && stop_pid "$name" "$pid"
done
: > "$STARTED"
