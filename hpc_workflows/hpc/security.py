"""TLS credentials for scheduler <-> worker <-> client traffic."""

from __future__ import annotations

from distributed.security import Security

#: dask config with no HTTP routes on the scheduler or the workers. distributed starts an HTTP
#: server on each even with the dashboard off (scheduler on 8787 by default), and its default
#: routes (info pages with worker logs and call stacks, JSON, Prometheus) answer anyone who can
#: reach the port, with no TLS or authentication: with no routes it answers only 404.
#: Dotted keys, as ``dask.config.set`` and a Nanny's ``config`` (set in the worker process after
#: the rest of the config) both take them.
NO_HTTP_ROUTES: dict[str, list] = {
    "distributed.scheduler.http.routes": [],
    "distributed.worker.http.routes": [],
}


def temporary_security() -> Security:
    """Fresh self-signed TLS credentials that live only as long as this run.

    Every connection must present this certificate (``require_encryption``), so another user on
    the cluster network can neither read the traffic nor connect a client of their own to the
    run's scheduler. dask-jobqueue writes the worker's copy of the key into
    ``shared_temp_directory`` with mode 0600 for the worker jobs to read.

    Returns
    -------
    distributed.security.Security
    """
    return Security.temporary()


def security_from_files(
    ca_file: str | None, cert: str | None, key: str | None
) -> Security | None:
    """Client-side TLS for an existing scheduler; ``None`` when no file is given (plain TCP).

    Parameters
    ----------
    ca_file, cert, key : str or None
        PEM files, as the scheduler's owner handed them out.
    """
    if not (ca_file or cert or key):
        return None
    return Security(
        tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key, require_encryption=True
    )
