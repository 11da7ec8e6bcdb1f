#!/bin/bash
# Production run of fetch_and_regrid on a SLURM system:
#   sbatch job_scripts/run_prod_slurm.sh                          (uses configs/prod_slurm.yaml)
#   sbatch --export=ALL,HPCW_CONFIG=configs/my_run.yaml job_scripts/run_prod_slurm.sh
# This job is only the coordinator (light: 1 core); the steps run on Dask workers that the
# executor submits as further jobs (see execution: in the config). Exits non-zero if the run fails.
# Log: logs/hpcw_prod-<job id>.out (stdout and stderr), relative to the submit folder: submit
# from the project folder (its logs/ is in git: sbatch does not create a missing folder, and a
# job that cannot open its log fails without a word).
#SBATCH --job-name=hpcw_prod
#SBATCH --time=12:00:00
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
#SBATCH --output=logs/%x-%j.out
## SITE: set your partition and account
##SBATCH --partition=normal
##SBATCH --account=my_project
set -euo pipefail
source "${HPCW_PROJECT_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}/job_scripts/lib/common.sh"
hpcw_setup
hpcw_run_job "${HPCW_CONFIG:-configs/prod_slurm.yaml}"
