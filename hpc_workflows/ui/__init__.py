"""The Dagster web UI for one user on a shared node: a Unix socket in a private folder (or a
TCP port) and a per-session secret token in front of every request.

``hpc-workflows ui`` (``hpc_workflows.ui.serve.main``) is what the job scripts run;
``auth``, ``listen``, ``private`` and ``banner`` know nothing of Dagster.
"""
