# Shared by the job scripts: find the project, activate its environment, set DAGSTER_HOME.
# Sourced, not run. Every setting is an environment variable so that
# `qsub -v HPCW_CONFIG=...` / `sbatch --export=ALL,HPCW_CONFIG=...` can change it.
#
#   HPCW_PROJECT_DIR  project checkout (default: the folder the job was submitted from)
#   HPCW_ACTIVATE     shell code that activates the environment, e.g.
#                     "module load anaconda3 && conda activate hpc_workflows"
#                     (default: source $HPCW_PROJECT_DIR/.venv/bin/activate)
#   DAGSTER_HOME      Dagster instance; MUST be on a filesystem every node sees
#                     (default: $HPCW_PROJECT_DIR/.dagster_home)

hpcw_log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# Job logs belong in logs/ (git-ignored), not in the checkout root. The scripts ask for that
# (#SBATCH --output=logs/..., #PBS -o logs/), but a qsub that ignores directives inside the
# script (SLURM's Torque-style wrapper: it always passes its own -o/-e) writes
# <script>.o<id>/.e<id> into the submit folder. Such a file is moved into logs/ here: the batch
# system keeps writing to the open file, wherever it now lives. Spooled logs (PBS Pro, Torque
# copy them out at the end of the job) are elsewhere on the node and left alone.
hpcw_move_job_logs() {
    local fd target
    for fd in 1 2; do
        # /proc/$$: the script's own descriptors (in $(...) /proc/self would be the pipe)
        target=$(readlink -f "/proc/$$/fd/$fd" 2>/dev/null) || continue
        if [ -f "$target" ] && [ "$(dirname "$target")" = "$PWD" ]; then
            mkdir -p logs
            if mv -n "$target" logs/ 2>/dev/null; then
                hpcw_log "job log moved from the submit folder to logs/${target##*/}"
            fi
        fi
    done
}

hpcw_setup() {
    # PBS starts jobs in $HOME; SLURM in the submit folder. Both record the submit folder.
    HPCW_PROJECT_DIR=${HPCW_PROJECT_DIR:-${PBS_O_WORKDIR:-${SLURM_SUBMIT_DIR:-$PWD}}}
    if [ ! -f "$HPCW_PROJECT_DIR/pyproject.toml" ] || [ ! -d "$HPCW_PROJECT_DIR/hpc_workflows" ]; then
        echo "error: $HPCW_PROJECT_DIR is not the hpc_workflows project folder:" \
             "submit from the project folder or set HPCW_PROJECT_DIR" >&2
        return 2
    fi
    cd "$HPCW_PROJECT_DIR"
    hpcw_move_job_logs
    if [ -n "${HPCW_ACTIVATE:-}" ]; then
        eval "$HPCW_ACTIVATE"
    elif [ -f .venv/bin/activate ]; then
        # shellcheck disable=SC1091
        source .venv/bin/activate
    fi
    if ! command -v dagster >/dev/null 2>&1; then
        echo "error: no 'dagster' on PATH after activating the environment:" \
             "run ./quickstart.sh once, or set HPCW_ACTIVATE" >&2
        return 2
    fi
    export DAGSTER_HOME=${DAGSTER_HOME:-$HPCW_PROJECT_DIR/.dagster_home}
    hpc-workflows init-home "$DAGSTER_HOME" >/dev/null
    hpcw_log "project $HPCW_PROJECT_DIR, python $(command -v python), DAGSTER_HOME $DAGSTER_HOME"
}

# PYTHONWARNINGS entry that silences the SupersessionWarning of `dagster job execute`.
HPCW_SUPERSEDED_FILTER='ignore:Function `job_execute_command` is superseded'

# Run the production job with the config in $1; exit status is the run's (non-zero on failure).
hpcw_run_job() {
    local config=$1
    hpc-workflows check-config "$config" || return 2
    hpcw_log "running fetch_and_regrid with $config on ${HOSTNAME:-$(hostname)}"
    local rc=0
    # `dagster job execute` warns on every call that it is superseded by `dg launch`, which
    # needs the separate dagster-dg-cli and a dg project. It still works and is what we
    # support; filtered by its message (a category filter would import dagster at startup
    # of every Python process), for this one command only.
    PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}$HPCW_SUPERSEDED_FILTER" \
        dagster job execute -m hpc_workflows -j fetch_and_regrid -c "$config" || rc=$?
    if [ "$rc" -eq 0 ]; then
        hpcw_log "run succeeded"
    else
        hpcw_log "run FAILED (exit $rc): see the log above and 'dagster dev -m hpc_workflows' for details"
    fi
    return "$rc"
}

# A free TCP port on this node.
hpcw_free_port() {
    python - <<'PY'
import socket
with socket.socket() as s:
    s.bind(("", 0))
    print(s.getsockname()[1])
PY
}

# Start the web UI for its owner only and tell the user how to reach it; stop cleanly when
# the job ends. `hpc-workflows ui` listens on a Unix socket in a private (0700) folder and
# wants a per-session secret token on every request; the job log (often world-readable) gets
# the tunnel command and the path of the 0600 file holding the URL, never the token.
#   HPCW_UI_EXPOSE=1   listen on this node's network name instead (token still required)
#   HPCW_LOGIN_HOST    login host for the printed ssh command
#   HPCW_UI_PORT       port: laptop end of the tunnel, and the node's port when exposed
hpcw_run_ui() {
    local port node args
    port=${HPCW_UI_PORT:-$(hpcw_free_port)}
    node=$(hostname)
    args=(--local-port "$port" --node "$node")
    if [ -n "${HPCW_LOGIN_HOST:-}" ]; then
        args+=(--login-host "$HPCW_LOGIN_HOST")
    fi
    if [ "${HPCW_UI_EXPOSE:-0}" = "1" ]; then
        echo "WARNING: the web UI listens on $node:$port: anyone who can reach this node can" \
             "connect, and only the secret token keeps them out; keep its URL file private." >&2
        args+=(--host "$node" --port "$port")
    fi
    hpc-workflows ui "${args[@]}" &
    HPCW_UI_PID=$!
    # Batch systems send TERM before the walltime kill (and on qdel/scancel): stop the UI
    # cleanly then, so no webserver outlives the job and its socket and URL file are removed.
    trap 'hpcw_log "stopping web UI (pid $HPCW_UI_PID)"; kill -TERM "$HPCW_UI_PID" 2>/dev/null; wait "$HPCW_UI_PID" || true; exit 0' TERM INT
    wait "$HPCW_UI_PID"
}
