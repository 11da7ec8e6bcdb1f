#!/usr/bin/env bash
# The README's two commands:
#   ./quickstart.sh demo   set up (if needed) and run fetch_and_regrid on the offline sample data
#   ./quickstart.sh test   set up (if needed) and run the whole test suite, batch-system tests included
# Both are idempotent: a second run reuses the environment and the running testbed.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${HPCW_VENV:-.venv}
INSTALL_RECIPE=3  # bump when the way ensure_venv installs changes (forces a reinstall)
PYTHON=${PYTHON:-python3}
export DAGSTER_HOME=${DAGSTER_HOME:-$PWD/.dagster_home}

need_root() { if [ "$(id -u)" -ne 0 ]; then echo sudo; fi; }

ensure_python() {
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        echo "hpc_workflows needs Python >= 3.10 as '$PYTHON' (set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
}

ensure_venv() {
    ensure_python
    if [ ! -x "$VENV/bin/python" ]; then
        echo "== creating $VENV"
        if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
            # Debian/Ubuntu ship venv separately.
            rm -rf "$VENV"
            $(need_root) apt-get -o DPkg::Lock::Timeout=600 update -q
            $(need_root) apt-get -o DPkg::Lock::Timeout=600 install -y -q python3-venv
            "$PYTHON" -m venv "$VENV"
        fi
    fi
    # Reinstall only when the dependency list or the install recipe (INSTALL_RECIPE) changed.
    local stamp="$VENV/.installed-$( (cat pyproject.toml; echo "$INSTALL_RECIPE") | sha256sum | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        echo "== installing hpc_workflows and its dependencies into $VENV"
        local started=$SECONDS
        "$VENV/bin/python" -m pip install -q --upgrade pip uv
        # Bytecode: uv writes no .pyc files by default, and with PYTHONDONTWRITEBYTECODE set
        # (as on many CI machines) every process, each Dask worker included, then compiles
        # dagster from source: `import dagster` took 3.5-4.2 s instead of 1.6-2.1 s here.
        # uv compiles only what it installs in this call; compileall catches the rest
        # (packages kept from an earlier install, the pip fallback). ~20 s once.
        if ! "$VENV/bin/uv" pip install --python "$VENV/bin/python" -q --compile-bytecode -e '.[dev]'; then
            echo "uv failed; falling back to pip" >&2
            "$VENV/bin/python" -m pip install -q -e '.[dev]'
        fi
        "$VENV/bin/python" -m compileall -q -j 0 \
            "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null
        rm -f "$VENV"/.installed-*
        touch "$stamp"
        echo "== environment ready in $((SECONDS - started)) s ($(du -sh "$VENV" | cut -f1))"
    fi
}

cmd=${1:-}
case "$cmd" in
    demo)
        ensure_venv
        "$VENV/bin/hpc-workflows" init-home "$DAGSTER_HOME" >/dev/null
        rm -f outputs/demo/run_summary.json
        started=$SECONDS
        # The job scripts' filter for the SupersessionWarning `dagster job execute` prints.
        source job_scripts/lib/common.sh
        PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}$HPCW_SUPERSEDED_FILTER" \
            "$VENV/bin/dagster" job execute -m hpc_workflows -j fetch_and_regrid -c configs/dev.yaml
        echo "== demo finished in $((SECONDS - started)) s; run history in $DAGSTER_HOME"
        "$VENV/bin/hpc-workflows" report outputs/demo
        ;;
    test)
        ensure_venv
        bash ci/install-system-packages.sh
        if [ -x ci/testbed/start.sh ] || [ -f ci/testbed/start.sh ]; then
            bash ci/testbed/start.sh
        fi
        shift
        started=$SECONDS
        set +e
        "$VENV/bin/python" -m pytest "$@"
        rc=$?
        set -e
        echo "== test suite finished in $((SECONDS - started)) s (exit $rc)"
        exit $rc
        ;;
    *)
        echo "usage: $0 demo|test [pytest args]" >&2
        exit 2
        ;;
esac
