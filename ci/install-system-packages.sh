#!/usr/bin/env bash
# Install the Debian packages the project and its tests need (idempotent).
# apt-get update runs only when a package is missing; the dpkg lock is waited for because
# several engineers/CI jobs may install at the same time on a shared machine.
set -euo pipefail

PACKAGES=(
    # independent reference for regridding tests (tests/regrid) and benchmarks/regrid_bench.py
    cdo
    # real single-node SLURM testbed (ci/testbed/start.sh) + PBS-style qsub/qstat/qdel wrappers
    munge
    slurm-wlm
    slurm-client
    slurm-wlm-torque
    # the testbed's accounting (sacct, associations): slurmdbd on a user-space MariaDB
    slurmdbd
    mariadb-server
    # the testbed's extra nodes: network namespaces, veth and a bridge (ip), nsenter (util-linux)
    iproute2
    # headless browser for the UI screenshot test (tests/hpc)
    chromium
    # a user-space PostgreSQL for the Dagster instance (hpc_workflows/pgserver.py, tests)
    postgresql
    # a private sshd on loopback for the web UI tunnel test (tests/ui)
    openssh-server
    # the second user's own TLS certificate in tests/hpc/other_user_probe.py
    openssl
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-system-packages: all ${#PACKAGES[@]} packages present"
    exit 0
fi

echo "install-system-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -q
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
