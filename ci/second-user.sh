#!/usr/bin/env bash
# A second, unprivileged unix user for the shared-node security tests (tests/second_user.py):
# what another account on the same login/compute node can reach of ours. Idempotent.
#
#   user   hpcw-other (no home, no login shell needed: tests run commands with runuser -s)
#   venv   /opt/hpcw-other/venv, from Debian's python3, with the same dask/distributed as ours,
#          so an attack that fails does so because it was refused, not because the client is
#          incompatible. World-readable: the user cannot reach our .venv (its python lives
#          under /root, mode 0700).
set -euo pipefail
cd "$(dirname "$0")/.."

USER_NAME=${HPCW_OTHER_USER:-hpcw-other}
VENV=/opt/hpcw-other/venv
# Keep in step with pyproject.toml.
PINS=("dask==2026.8.0" "distributed==2026.8.0")

if ! id -u "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
fi

stamp="$VENV/.installed-$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    if ! /usr/bin/python3 -m venv --help >/dev/null 2>&1 || ! /usr/bin/python3 -c 'import ensurepip' 2>/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends python3-venv \
            || { apt-get -o DPkg::Lock::Timeout=600 update -q
                 apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends python3-venv; }
    fi
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q "${PINS[@]}"
    chmod -R a+rX "$(dirname "$VENV")"
    touch "$stamp"
fi
echo "second-user: $USER_NAME with $VENV ready"
