#!/bin/bash
# The Dagster web UI on a PBS compute node, reached from your laptop through an SSH tunnel:
#   qsub -v HPCW_LOGIN_HOST=login.mysite.org job_scripts/run_dagit.sh
# then read the job's output file for the exact ssh command and the private file holding the URL.
# The UI (`hpc-workflows ui`) answers only you: it listens on a Unix socket in a 0700 folder on
# the node (the tunnel forwards to it) and wants a per-session secret token on every request.
# The token is only in ~/.hpc_workflows/ui/job-<id>.url (mode 0600), never in this job's log.
# HPCW_UI_EXPOSE=1 listens on the node's network name instead (the `dagit -h $HOSTNAME`
# habit); the token is still required.
#PBS -N hpcw_ui
#PBS -l walltime=08:00:00
#PBS -l select=1:ncpus=1:mem=2gb
#PBS -j oe
##PBS -q normal
##PBS -A my_project
set -euo pipefail
source "${HPCW_PROJECT_DIR:-${PBS_O_WORKDIR:-$PWD}}/job_scripts/lib/common.sh"
hpcw_setup
hpcw_run_ui
