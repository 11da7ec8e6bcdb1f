"""Build, scale and tear down the Dask cluster of one run (local, SLURM, PBS or existing).

Reuses ``distributed.LocalCluster`` and dask-jobqueue's ``SLURMCluster``/``PBSCluster``; what is
added is what a run needs around them: scaling that is always requested, job submission errors
surfaced, a worker slot resource so a worker runs one step at a time, walltime-derived worker
lifetimes (drain then close, :mod:`.retirement`), TLS by default (local clusters too: loopback is
shared by every user of the node) and no HTTP routes on local clusters, and a close that leaves no job behind.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.config
from distributed import Client, LocalCluster
from distributed.security import Security

from .accounting import collect_worker_usage
from .batch_jobs import SubmissionLedger, tracked_cluster_class
from .retirement import JOB_START_ENV, RetireBeforeWalltime
from .security import NO_HTTP_ROUTES, security_from_files, temporary_security
from .settings import STEP_SLOT, BatchClusterSettings, ExecutorSettings, LocalClusterSettings
from .step_budget import TIME_LEFT
from .walltime import parse_walltime

log = logging.getLogger(__name__)

_CANCEL = {"slurm": "scancel", "pbs": "qdel"}


#: The dask config of every worker of a run: no HTTP routes (NO_HTTP_ROUTES), and no
#: statistical profiler, which samples every thread's stack every 10 ms for the dashboard's
#: profile page, which these workers never serve. With it off, a 1,000-file archive run on a
#: local cluster spent 0.019 instead of 0.025 s of CPU overhead per file, and a worker peaked
#: at 259 instead of 311 MiB (benchmarks/archive_bench.py, back to back at the same load).
WORKER_CONFIG: dict[str, Any] = {**NO_HTTP_ROUTES, "distributed.worker.profile.enabled": False}


class WorkerStartError(RuntimeError):
    """The workers of a local cluster failed to start: the run cannot make progress."""


#: Seconds a local worker process gets to exit when the run's cluster closes before its nanny
#: kills it. A worker that has run Dagster steps spends 1.5-2 s in interpreter teardown
#: after it has closed (thousands of modules), and distributed waits for that (up to 4 s).
#: By then every step has returned or been cancelled, so nothing of the worker's is lost.
LOCAL_WORKER_EXIT_GRACE = 1.0


async def _stop_nannies(nannies: list[Any], grace: float) -> None:
    await asyncio.gather(*(n.close(timeout=grace) for n in nannies), return_exceptions=True)


def unstarted_jobs(worker_spec: dict[Any, dict], connected_names: set[str]) -> list[Any]:
    """The jobs of ``worker_spec`` none of whose workers is connected to the scheduler.

    A job with several worker processes is a ``group``: its workers are named job name +
    suffix (SpecCluster's convention), so a job counts as started once any of them connected.
    """
    unstarted = []
    for name, spec in worker_spec.items():
        names = {str(name) + suffix for suffix in spec.get("group", ())} or {str(name)}
        if not names & connected_names:
            unstarted.append(name)
    return unstarted


#: Seconds the close keeps retiring workers that connect while it runs (a job that had
#: already started its worker when the unstarted ones were cancelled).
RETIRE_SETTLE = 15.0


def _connected(client: Client) -> dict[str, str]:
    """Address -> name of every worker connected to the scheduler now."""
    return {addr: str(info.get("name")) for addr, info in client.scheduler_info().get("workers", {}).items()}


def _retire_batch_workers(cluster: Any, client: Client) -> None:
    """Ask every worker to close, with its nanny, so that its batch job ends by itself.

    dask-jobqueue's close only removes workers from the scheduler and cancels their jobs: the
    workers see the scheduler vanish (CommClosedError tracebacks in their logs) and SIGTERM
    races their close. Retired with ``close_workers`` they exit cleanly first; the adaptive
    loop is stopped so that it does not submit replacements meanwhile. Jobs still queued or
    starting are cancelled first: otherwise a worker that connects while the others are being
    retired is still connected when the scheduler closes, and logs that as a traceback.
    """
    adaptive = getattr(cluster, "_adaptive", None)  # SpecCluster's own handle on adapt()
    if adaptive is not None:
        adaptive.stop()
    try:
        unstarted = unstarted_jobs(dict(cluster.worker_spec), set(_connected(client).values()))
        if unstarted:
            for name in unstarted:
                cluster.worker_spec.pop(name, None)
            cluster.sync(cluster._correct_state)  # closes (scancel/qdel) the jobs no longer in spec
        deadline = time.monotonic() + RETIRE_SETTLE
        while True:
            # All of them: with no list, the scheduler picks only the ones its policy finds idle.
            workers = list(_connected(client))
            if not workers or time.monotonic() > deadline:
                break
            client.retire_workers(workers=workers, close_workers=True, remove=True)
    except Exception as exc:  # noqa: BLE001 - the cluster close below cancels the jobs anyway
        log.info("retiring the workers before closing failed: %s", exc)


def _env_exports(config: dict[str, Any]) -> list[str]:
    """``export DASK_...`` lines that set dotted dask ``config`` keys in a batch job's worker."""
    return [f"export DASK_{key.upper().replace('.', '__').replace('-', '_')}={shlex.quote(repr(value))}"
            for key, value in config.items()]


def _resource_arg(resources: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in resources.items())


@dataclass
class RunCluster:
    """The cluster, client and bookkeeping of one run. Use :func:`open_cluster` to make one."""

    kind: str
    client: Client
    cluster: Any | None  # None for an existing scheduler (not ours to scale or close)
    worker_resources: dict[str, float] | None  # None: unknown (existing cluster)
    threads_per_worker: int | None
    ledger: SubmissionLedger = field(default_factory=SubmissionLedger)
    security: Security | None = None

    @property
    def step_resources(self) -> dict[str, float]:
        """Resources every step asks for besides its own (one step per worker process)."""
        return {} if self.kind == "existing" else {STEP_SLOT: 1}

    def worker_count(self) -> int:
        """Workers connected to the scheduler now."""
        return len(self.client.nthreads())

    def submission_errors(self) -> list[str]:
        """Messages of batch submissions that failed (e.g. queue rejected)."""
        return list(self.ledger.errors)

    def scale(self, minimum: int, maximum: int) -> None:
        """Request workers. Batch clusters always run dask's adaptive loop, even for a fixed
        number, so that a worker job that dies (scancel, node failure, walltime) is replaced."""
        if self.cluster is None:
            return
        if self.kind == "local" and minimum == maximum:
            self.cluster.scale(minimum)
        else:
            self.cluster.adapt(minimum=minimum, maximum=maximum, interval="500ms")

    def close(self) -> None:
        """Close client and cluster, then cancel any job of ours the batch system still has."""
        if self.kind in _CANCEL and self.cluster is not None:
            self.ledger.worker_reports.extend(collect_worker_usage(self.client))  # accounting fallback
            _retire_batch_workers(self.cluster, self.client)
        try:
            self.client.close(timeout=10)
        except Exception as exc:  # noqa: BLE001 - teardown must go on
            log.warning("closing the Dask client failed: %s", exc)
        if self.cluster is not None:
            if self.kind == "local":
                try:
                    self.cluster.sync(_stop_nannies, list(self.cluster.workers.values()),
                                      LOCAL_WORKER_EXIT_GRACE)
                except Exception as exc:  # noqa: BLE001 - cluster.close below still runs
                    log.warning("stopping the local workers failed: %s", exc)
            try:
                self.cluster.close(timeout=30)
            except Exception as exc:  # noqa: BLE001 - e.g. a job whose submission failed
                log.warning("closing the Dask cluster failed: %s", exc)
            # dask-jobqueue keeps the temporary TLS key/cert files open (deleted on close):
            # remove them now rather than whenever the cluster object is collected.
            for part in ("ca_file", "cert", "key"):
                handle = getattr(self.cluster, f"_job_{part}", None)
                if handle is not None:
                    try:
                        handle.close()
                    except OSError:
                        pass
        if self.kind in _CANCEL and self.ledger.job_ids:
            # dask-jobqueue cancels the jobs it still tracks; this catches the ones it lost track
            # of. Cancelling a finished job is harmless, its complaint is dropped.
            subprocess.run(
                [_CANCEL[self.kind], *self.ledger.job_ids],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )


def _open_local(s: LocalClusterSettings, name: str, n_workers: int) -> RunCluster:
    security = temporary_security() if s.tls else None
    resources = {STEP_SLOT: 1, **s.resources}
    kwargs: dict[str, Any] = dict(
        name=name,
        # Started here, not by scale(): LocalCluster then waits for them and raises when they
        # cannot start. Scaling later is fire-and-forget; a worker that fails there is only
        # logged and the run would wait out worker_start_timeout.
        n_workers=n_workers,
        threads_per_worker=s.threads_per_worker,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        # Its HTTP server (no routes, see NO_HTTP_ROUTES) on a free port, not 8787.
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        resources=resources,
        silence_logs=logging.ERROR,
        security=security,
        protocol="tls://" if security else None,
        config=WORKER_CONFIG,  # to each worker, also ones adapt starts later
    )
    if s.memory_limit:
        kwargs["memory_limit"] = s.memory_limit
    if s.local_directory:
        kwargs["local_directory"] = s.local_directory
    try:
        with dask.config.set(NO_HTTP_ROUTES):  # the scheduler, started here
            cluster = LocalCluster(**kwargs)
    except Exception as exc:  # noqa: BLE001 - e.g. NotADirectoryError, "Cluster failed to start"
        raise WorkerStartError(
            f"the local Dask workers failed to start ({type(exc).__name__}: {exc}), so no step can "
            "run. Check local_directory and memory_limit in execution.config.cluster.local, "
            "and that the job's module imports in a fresh Python process (a script that starts "
            "a run needs an `if __name__ == '__main__':` guard)."
        ) from exc
    client = Client(cluster, security=security, set_as_default=False)
    return RunCluster("local", client, cluster, resources, s.threads_per_worker, security=security)


def batch_cluster_kwargs(
    s: BatchClusterSettings, name: str, security: Security | None
) -> tuple[dict[str, Any], dict[str, float]]:
    """The SLURMCluster/PBSCluster keyword arguments of a run, and its workers' Dask resources.

    One definition for the cluster a run opens and for ``hpc-workflows plan``, which prints
    the job script these arguments make without submitting anything.
    """
    life = s.lifetime()
    # TIME_LEFT starts at the most a worker can have, so that a new worker is offered the
    # steps waiting for time; RetireBeforeWalltime sets its true value before its first step.
    resources = {STEP_SLOT: 1, TIME_LEFT: life.lifetime + life.stagger, **s.resources}
    kwargs: dict[str, Any] = dict(
        name=name,
        job_name=name,
        cores=s.cores,
        processes=s.processes,
        memory=s.memory,
        walltime=s.walltime,
        queue=s.queue,
        account=s.account,
        interface=s.interface,
        local_directory=s.local_directory,
        log_directory=s.log_directory,
        # The drain plugin counts the worker's lifetime from job start, not worker start.
        # The worker's HTTP server (Prometheus metrics, call stacks, logs) has no authentication
        # and a batch node is shared: no routes, as on local clusters (WORKER_CONFIG).
        job_script_prologue=[f"export {JOB_START_ENV}=$(date +%s)", *_env_exports(WORKER_CONFIG),
                             *s.job_script_prologue],
        job_extra_directives=list(s.job_extra_directives),
        # No dashboard either: it is served besides the routes, with no authentication.
        worker_extra_args=["--resources", _resource_arg(resources), "--no-dashboard"],
        python=s.python or sys.executable,
        death_timeout=s.death_timeout,
        security=security,
        # The dashboard has no authentication: not opened on a shared login/compute node.
        scheduler_options={"dashboard": False, "dashboard_address": "127.0.0.1:0",
                           # Login and compute nodes often name their networks differently.
                           **({"interface": s.scheduler_interface} if s.scheduler_interface else {})},
    )
    if security is not None:
        kwargs["shared_temp_directory"] = s.shared_temp_directory or s.log_directory or str(Path.cwd())
    return kwargs, resources


def _open_batch(kind: str, s: BatchClusterSettings, name: str) -> RunCluster:
    ledger = SubmissionLedger(memory_on_oom_retry=s.memory_on_oom_retry)
    cluster_cls = tracked_cluster_class(kind, ledger)
    security = temporary_security() if s.tls else None
    life = s.lifetime()
    if s.log_directory:
        Path(s.log_directory).mkdir(parents=True, exist_ok=True)
    kwargs, resources = batch_cluster_kwargs(s, name, security)
    cluster = cluster_cls(**kwargs)
    client = Client(cluster, security=security, set_as_default=False)
    hard_limit = parse_walltime(s.walltime) - min(10, (parse_walltime(s.walltime) - life.lifetime) // 2)
    client.register_plugin(RetireBeforeWalltime(life.lifetime, life.stagger, hard_limit))
    return RunCluster(
        kind, client, cluster, resources, s.cores // s.processes, ledger=ledger, security=security
    )


def open_cluster(settings: ExecutorSettings, name: str) -> RunCluster:
    """Start (or connect to) the cluster described by ``settings`` and request its workers.

    Parameters
    ----------
    settings : ExecutorSettings
        Validated executor settings.
    name : str
        Cluster and batch job name (shows in ``squeue``/``qstat``); make it run-unique.

    Returns
    -------
    RunCluster
        Close it with :meth:`RunCluster.close` (also on failure and interrupt).
    """
    kind = settings.cluster.kind
    s = settings.cluster.settings
    if kind == "local":
        # At least one worker up front, also for adapt with minimum 0: a run has steps to
        # run from its start, and a worker that cannot start must fail it here, not later.
        rc = _open_local(s, name, max(1, settings.workers_wanted()[0]))  # type: ignore[arg-type]
    elif kind in ("slurm", "pbs"):
        rc = _open_batch(kind, s, name)  # type: ignore[arg-type]
    else:
        security = security_from_files(s.tls_ca_file, s.tls_client_cert, s.tls_client_key)  # type: ignore[union-attr]
        client = Client(s.address, security=security, set_as_default=False, timeout=30)  # type: ignore[union-attr]
        return RunCluster("existing", client, None, None, None, security=security)
    try:
        rc.scale(*settings.workers_wanted())
    except Exception:
        rc.close()
        raise
    return rc


def missing_resources(
    wanted: dict[str, float], offered: dict[str, float] | None
) -> dict[str, float]:
    """Resources in ``wanted`` that a worker offering ``offered`` can never satisfy.

    Returns an empty dict when every request fits (or when the offer is unknown).
    """
    if offered is None:
        return {}
    return {k: v for k, v in wanted.items() if offered.get(k, 0) < v}
