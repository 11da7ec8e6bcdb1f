#!/bin/bash
# The Dagster web UI on a SLURM compute node, reached from your laptop through an SSH tunnel:
#   sbatch --export=ALL,HPCW_LOGIN_HOST=login.mysite.org job_scripts/run_dagit_slurm.sh
# then read slurm-<jobid>.out for the exact ssh command and the private file holding the URL.
# The UI (`hpc-workflows ui`) answers only you: it listens on a Unix socket in a 0700 folder on
# the node (the tunnel forwards to it) and wants a per-session secret token on every request.
# The token is only in ~/.hpc_workflows/ui/job-<id>.url (mode 0600), never in this job's log.
# HPCW_UI_EXPOSE=1 listens on the node's network name instead (the `dagit -h $HOSTNAME`
# habit); the token is still required.
#SBATCH --job-name=hpcw_ui
#SBATCH --time=08:00:00
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=2G
# TERM to the script 2 minutes before the walltime so the UI stops cleanly.
#SBATCH --signal=B:TERM@120
##SBATCH --partition=normal
##SBATCH --account=my_project
set -euo pipefail
source "${HPCW_PROJECT_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}/job_scripts/lib/common.sh"
hpcw_setup
hpcw_run_ui
