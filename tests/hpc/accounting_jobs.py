"""A Dagster job whose one step needs more memory than its worker job asked for (loaded by file
path on the workers, like executor_jobs.py). HPCWF_TEST_HOG_MB: how much it touches;
HPCWF_TEST_HOG_SECONDS: how long it holds it (longer than the batch system's sampling)."""

import os
import time

import dagster as dg

from hpc_workflows.hpc.executor import hpc_dask_executor


@dg.op
def hog() -> int:
    size = int(os.environ.get("HPCWF_TEST_HOG_MB", "100")) * 2**20
    block = bytearray(size)
    block[::4096] = b"a" * len(block[::4096])  # touch every page: resident, not just reserved
    time.sleep(float(os.environ.get("HPCWF_TEST_HOG_SECONDS", "0")))
    return len(block)


@dg.job(executor_def=hpc_dask_executor)
def hog_job():
    hog()
