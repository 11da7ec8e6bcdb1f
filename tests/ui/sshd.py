"""A private OpenSSH server on a loopback port, to test the printed tunnel commands for real.

Host key and client key are generated per session, the client is pinned to that host key,
and an ssh config maps the names the UI prints (the login host and this node) to the private
server, as a user's ~/.ssh/config maps them on a laptop. Started and stopped by the fixture.
"""

from __future__ import annotations

import os
import pwd
import shlex
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hpc.conftest import wait_until

SSHD = "/usr/sbin/sshd"


@dataclass
class PrivateSshd:
    config: Path  # the client's ssh config (-F)
    port: int

    def tunnel(self, printed: str, local_port: int) -> subprocess.Popen:
        """Run the printed ``ssh -N -L ...`` command as printed, with our config file, and
        wait until its local port accepts connections."""
        args = shlex.split(printed)
        assert args[0] == "ssh", printed
        proc = subprocess.Popen([args[0], "-F", str(self.config), "-o", "ExitOnForwardFailure=yes", *args[1:]],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_listening(proc, local_port, f"the tunnel {printed!r}", lambda: proc.stdout.read())
        return proc


def wait_listening(proc: subprocess.Popen, port: int, what: str, output: Callable[[], str]) -> None:
    """Wait until 127.0.0.1:``port`` accepts connections; fail with ``output()`` if ``proc`` exits."""
    def listening() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited: {output()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return True
        except OSError:
            return False

    wait_until(listening, 60, what)


def free_port() -> int:
    """A free TCP port on loopback (the private sshd's, or the laptop end of a tunnel)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def private_sshd(tmp_path_factory) -> PrivateSshd:
    """sshd on 127.0.0.1:<free port>, accepting one throwaway key for the current user."""
    if not os.path.exists(SSHD):
        subprocess.run(["bash", "ci/install-system-packages.sh"], check=True, timeout=900,
                       cwd=Path(__file__).resolve().parents[2])
    d = tmp_path_factory.mktemp("sshd")
    os.chmod(d, 0o700)
    for key in ("host_key", "id"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "id.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
AuthorizedKeysFile {d}/authorized_keys
PidFile {d}/sshd.pid
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
""")
    user = pwd.getpwuid(os.geteuid()).pw_name
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {(d / 'host_key.pub').read_text()}")
    (d / "ssh_config").write_text(f"""\
Host login.test {socket.gethostname()}
    HostName 127.0.0.1
    Port {port}
    User {user}
    IdentityFile {d}/id
    IdentitiesOnly yes
    BatchMode yes
    StrictHostKeyChecking yes
    UserKnownHostsFile {d}/known_hosts
""")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
    log = open(d / "sshd.log", "w")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stdout=log, stderr=subprocess.STDOUT)

    try:
        wait_listening(proc, port, "the private sshd", lambda: (d / "sshd.log").read_text())
        yield PrivateSshd(d / "ssh_config", port)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
