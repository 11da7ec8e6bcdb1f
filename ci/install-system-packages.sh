#!/usr/bin/env bash
# Install the Debian packages the test suite and benchmarks need (idempotent).
# Add one package per line to PACKAGES; apt-get update runs only when something is missing.
set -euo pipefail

PACKAGES=(
    cdo
    munge
    slurm-wlm
    slurm-client
    slurm-wlm-torque
    chromium
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "system packages already installed: ${PACKAGES[*]}"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
