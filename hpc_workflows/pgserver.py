"""A user-space PostgreSQL server for the Dagster instance, reachable only by its owner.

SQLite (Dagster's default) on a network filesystem with many workers writing events is what
Dagster warns against ("database is locked"); PostgreSQL through ``dagster-postgres`` is the
documented fix. Most HPC users cannot ask for a database server, so this starts one in their
own account with Debian's (or conda's) ``initdb``/``pg_ctl`` and writes the ``dagster.yaml``
that uses it::

    hpc-workflows postgres start            # idempotent; prints where it listens
    hpc-workflows postgres status
    hpc-workflows postgres stop

Everything lives in ``$DAGSTER_HOME/postgres/`` (mode 0700):

``data/``     the cluster (initdb requires 0700)
``run/``      the Unix socket (0700: other users cannot even connect)
``pgpass``    the generated password, mode 0600, in libpq's passfile format
``server.json`` host, port and socket folder (no secret)
``server.log``  the server's log (0600)

Who can connect: TCP connections need the password (scram-sha-256) and the role; the password
is only in ``pgpass``, which ``dagster.yaml`` names through libpq's ``passfile`` parameter, so
neither ``dagster.yaml``, the run configs stored in the instance, nor any log holds it. Workers on
other nodes read ``pgpass`` from the shared ``DAGSTER_HOME`` (as the same user).

PostgreSQL refuses to run as root. When started by root (CI, containers) the server runs as
the unprivileged ``postgres`` account and the folders belong to it; root can still connect.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["PgServer", "start", "stop", "status", "write_instance_yaml", "main"]

ROLE = "hpcw"
DB = "dagster"
_SEARCH = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin")


class PgServerError(RuntimeError):
    """The server could not be set up or started; the message says what to do."""


@dataclass(frozen=True)
class PgServer:
    """Where a running server listens (no secret in here)."""

    host: str
    port: int
    socket_dir: str
    passfile: str
    role: str = ROLE
    db: str = DB

    def conninfo(self, *, via_socket: bool = False) -> dict[str, Any]:
        """libpq keyword parameters (for psycopg2.connect)."""
        return {"host": self.socket_dir if via_socket else self.host, "port": self.port,
                "user": self.role, "dbname": self.db, "passfile": self.passfile}


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    import glob

    for pattern in _SEARCH:
        for folder in sorted(glob.glob(pattern), reverse=True):  # newest major version first
            candidate = Path(folder) / name
            if candidate.exists():
                return str(candidate)
    raise PgServerError(
        f"{name} not found: install PostgreSQL's server programs (Debian: apt-get install "
        "postgresql; conda: conda install -c conda-forge postgresql) or put them on PATH"
    )


def _root_dir(home: Path) -> Path:
    return home / "postgres"


def _service_user() -> pwd.struct_passwd | None:
    """The account the server runs as when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(os.environ.get("HPCW_PG_SERVICE_USER", "postgres"))
    except KeyError:
        raise PgServerError(
            "PostgreSQL refuses to run as root and there is no 'postgres' account to run it as: "
            "start it as your own user, or set HPCW_PG_SERVICE_USER to an unprivileged account"
        ) from None


def _run(args: list[str], *, as_user: pwd.struct_passwd | None, **kw: Any) -> subprocess.CompletedProcess:
    if as_user is not None:
        args = ["runuser", "-u", as_user.pw_name, "--", *args]
    return subprocess.run(args, capture_output=True, text=True, **kw)


def _chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    for p in [path, *path.rglob("*")]:
        os.chown(p, user.pw_uid, user.pw_gid)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _info_file(home: Path) -> Path:
    return _root_dir(home) / "server.json"


def status(home: str | os.PathLike[str]) -> PgServer | None:
    """The server of ``home`` if it answers, else ``None``."""
    home = Path(home)
    info = _info_file(home)
    if not info.is_file():
        return None
    server = PgServer(**json.loads(info.read_text()))
    ready = subprocess.run([_pg_bin("pg_isready"), "-q", "-h", server.socket_dir, "-p", str(server.port)],
                           capture_output=True, timeout=30)
    return server if ready.returncode == 0 else None


def start(home: str | os.PathLike[str], *, listen: str = "127.0.0.1", port: int | None = None,
          timeout: float = 60.0) -> PgServer:
    """Initialise (once) and start the server of ``home``; idempotent.

    Parameters
    ----------
    home : path
        The ``DAGSTER_HOME`` folder; the server lives in ``home/postgres``.
    listen : str
        TCP address to listen on: the login node's address that compute nodes reach (e.g. its
        hostname), ``127.0.0.1`` for one node, or ``""`` for the Unix socket only.
    port : int, optional
        TCP port; default a free one chosen at first start and then kept.
    timeout : float
        Seconds to wait for the server to accept connections.

    Returns
    -------
    PgServer
    """
    home = Path(home).resolve()
    running = status(home)
    if running is not None:
        return running
    user = _service_user()
    root = _root_dir(home)
    _private_dir(root)
    data, run, passfile, log = root / "data", root / "run", root / "pgpass", root / "server.log"
    _private_dir(run)
    if not passfile.exists():
        password = secrets.token_urlsafe(32)
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"*:*:*:{ROLE}:{password}\n")
    if not (data / "PG_VERSION").exists():
        if data.exists():
            shutil.rmtree(data)  # a half-made cluster from an interrupted initdb
        _private_dir(data)
        pwfile = root / ".initpw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(passfile.read_text().strip().rsplit(":", 1)[1] + "\n")
        _chown_tree(root, user)
        try:
            res = _run([_pg_bin("initdb"), "-D", str(data), "-U", ROLE, "--auth=scram-sha-256",
                        f"--pwfile={pwfile}", "-E", "UTF8", "--no-instructions"],
                       as_user=user, timeout=300)
        finally:
            pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            raise PgServerError(f"initdb failed in {data}:\n{res.stderr.strip()[-2000:]}")
    info = _info_file(home)
    old = json.loads(info.read_text()) if info.is_file() else {}
    host = listen if listen else ""
    if port is None:
        port = int(old.get("port") or _free_port(listen or "127.0.0.1"))
    _chown_tree(root, user)
    # pgpass must belong to whoever connects (libpq refuses a group/world-readable one):
    # that is the invoking user, also when the server runs as the service account.
    os.chown(passfile, os.geteuid(), os.getegid())
    os.chmod(passfile, 0o600)
    opts = (f"-c listen_addresses='{host}' -c port={port} -c unix_socket_directories='{run}' "
            "-c unix_socket_permissions=0700 -c log_file_mode=0600 -c max_connections=200")
    res = _run([_pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w",
                "-t", str(int(timeout)), "start"], as_user=user, timeout=timeout + 30)
    if res.returncode != 0:
        tail = log.read_text()[-1500:] if log.exists() else ""
        raise PgServerError(f"pg_ctl start failed:\n{res.stderr.strip()}\n{tail}")
    server = PgServer(host=host or str(run), port=port, socket_dir=str(run), passfile=str(passfile))
    part = info.with_name("server.json.part")
    part.write_text(json.dumps(asdict(server), indent=1))
    part.replace(info)
    _ensure_database(server)
    return server


def _ensure_database(server: PgServer) -> None:
    import psycopg2

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = psycopg2.connect(**{**server.conninfo(), "dbname": "postgres"})
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # polling the server's readiness, bounded by the deadline
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (server.db,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{server.db}"')
    conn.close()


def stop(home: str | os.PathLike[str], timeout: float = 60.0) -> bool:
    """Stop the server of ``home`` (fast shutdown); ``False`` if it was not running."""
    home = Path(home).resolve()
    data = _root_dir(home) / "data"
    if not (data / "postmaster.pid").exists():
        return False
    res = _run([_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"],
               as_user=_service_user(), timeout=timeout + 30)
    return res.returncode == 0


def write_instance_yaml(home: str | os.PathLike[str], server: PgServer) -> Path:
    """Point ``home/dagster.yaml`` at ``server`` (runs, events, schedules); keep other settings.

    The password is not written: libpq reads it from ``server.passfile``.
    """
    from hpc_workflows.instance import ensure_dagster_home

    home = ensure_dagster_home(home)
    cfg_file = home / "dagster.yaml"
    text = cfg_file.read_text()
    cfg = yaml.safe_load(text) or {}
    cfg.pop("storage", None)
    for legacy in ("run_storage", "event_log_storage", "schedule_storage"):
        cfg.pop(legacy, None)
    cfg["storage"] = {"postgres": {"postgres_db": {
        "username": server.role, "hostname": server.host, "port": server.port,
        "db_name": server.db, "params": {"passfile": server.passfile},
        # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; dagster-postgres brings psycopg2.
        "scheme": "postgresql+psycopg2",
    }}}
    header = "# Written by hpc_workflows: the instance uses the PostgreSQL server in ./postgres\n" \
             "# (hpc-workflows postgres start|status|stop). The password is in postgres/pgpass.\n"
    part = cfg_file.with_name("dagster.yaml.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(header + yaml.safe_dump(cfg, sort_keys=False))
    part.replace(cfg_file)
    return cfg_file


def main(argv: list[str] | None = None) -> int:
    """``hpc-workflows postgres start|stop|status`` (also ``python -m hpc_workflows.pgserver``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="hpc-workflows postgres", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--home", default=os.environ.get("DAGSTER_HOME", ".dagster_home"),
                        help="DAGSTER_HOME (default: $DAGSTER_HOME or ./.dagster_home)")
    parser.add_argument("--listen", default="127.0.0.1",
                        help="TCP address compute nodes reach (default 127.0.0.1; '' = socket only)")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    home = Path(args.home).expanduser().resolve()
    try:
        if args.action == "start":
            server = start(home, listen=args.listen, port=args.port)
            cfg = write_instance_yaml(home, server)
            print(f"PostgreSQL for {home} listening on {server.host}:{server.port} "
                  f"(socket in {server.socket_dir}); {cfg} uses it")
        elif args.action == "stop":
            print("stopped" if stop(home) else "not running")
        else:
            server = status(home)
            if server is None:
                print("not running")
                return 1
            print(f"running on {server.host}:{server.port} (socket in {server.socket_dir})")
    except PgServerError as exc:
        print(f"error: {exc}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
