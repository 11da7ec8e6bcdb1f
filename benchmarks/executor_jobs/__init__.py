"""Jobs for benchmarks/executor_bench.py, one module per executor.

Each module imports only what its executor needs, as a user's job module would: a worker
loads the module of the job it runs, so a module shared by all three jobs would make our
workers import dagster-dask (and its dask.dataframe) just because the comparison job is there.
"""
