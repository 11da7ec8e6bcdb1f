"""Running Dagster steps on Dask workers that are themselves batch jobs (SLURM, PBS).

Library modules here (settings, walltime, security, batch_jobs, retirement, clusters) never
import dagster; the Dagster layer is :mod:`hpc_workflows.hpc.executor` (with :mod:`.worker_step`, the function
each Dask worker runs for one step).
"""
