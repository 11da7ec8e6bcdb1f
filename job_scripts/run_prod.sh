#!/bin/bash
# Production run of fetch_and_regrid on a PBS system:
#   qsub job_scripts/run_prod.sh                                  (uses configs/prod_pbs.yaml)
#   qsub -v HPCW_CONFIG=configs/my_run.yaml job_scripts/run_prod.sh
# This job is only the coordinator (light: 1 core); the steps run on Dask workers that the
# executor submits as further jobs (see execution: in the config). Exits non-zero if the run fails.
# Log: logs/hpcw_prod.o<job id> (stdout and stderr joined). Where qsub ignores -o/-j inside the
# script (SLURM's Torque-style qsub wrapper writes run_prod.sh.o<id>/.e<id> into the submit
# folder), hpcw_setup moves those files into logs/ as the job starts.
#PBS -N hpcw_prod
#PBS -l walltime=12:00:00
#PBS -l select=1:ncpus=1:mem=4gb
#PBS -j oe
#PBS -o logs/
## SITE: uncomment and set your queue and project
##PBS -q normal
##PBS -A my_project
set -euo pipefail
source "${HPCW_PROJECT_DIR:-${PBS_O_WORKDIR:-$PWD}}/job_scripts/lib/common.sh"
hpcw_setup
hpcw_run_job "${HPCW_CONFIG:-configs/prod_pbs.yaml}"
