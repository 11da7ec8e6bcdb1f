"""HTTPS (self-signed certificate made here) and a forward proxy from the environment."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hpc_workflows.fetch import FetchError, Source, fetch
from tests.fetch.fault_server import FaultServer, sha256_hex


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture
def tls_server(certificate):
    with FaultServer(tls=certificate) as srv:
        yield srv


def test_untrusted_certificate_fails_fast_with_a_fix(tls_server, tmp_path, fast_settings):
    url = tls_server.add("/a.bin", b"x" * 1000)
    with pytest.raises(FetchError) as info:
        fetch(Source(key="k", url=url), tmp_path, fast_settings)
    assert info.value.field == "url" and info.value.attempts == 1
    assert "not trusted" in str(info.value) and "SSL_CERT_FILE" in str(info.value)
    assert not (tmp_path / "a.bin").exists()


def test_site_ca_bundle_is_trusted_and_https_resumes(tls_server, certificate, tmp_path, fast_settings, monkeypatch):
    from tests.fetch.fault_server import Fault

    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    payload = os.urandom(500_000)
    url = tls_server.add("/a.bin", payload)
    tls_server.inject("/a.bin", Fault("truncate", at=200_000))
    result = fetch(Source(key="k", url=url, checksum=f"sha256:{sha256_hex(payload)}"), tmp_path, fast_settings)
    assert result.path.read_bytes() == payload
    assert [r.range for r in tls_server.requests()] == [None, "bytes=200000-"]


def test_verify_tls_off(tls_server, tmp_path, fast_settings):
    fast_settings.verify_tls = False
    url = tls_server.add("/a.bin", b"y" * 1000)
    assert fetch(Source(key="k", url=url), tmp_path, fast_settings).path.read_bytes() == b"y" * 1000


def test_http_proxy_from_environment(server, tmp_path, fast_settings, monkeypatch):
    """The loopback server acts as the proxy; the origin host does not even resolve."""
    payload = os.urandom(100_000)
    server.add("/radar/x.tar", payload)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    url = "http://archive.invalid:8080/radar/x.tar"
    result = fetch(Source(key="k", url=url, checksum=f"sha256:{sha256_hex(payload)}"), tmp_path, fast_settings)
    assert result.path.read_bytes() == payload
    assert [r.proxied_for for r in server.requests()] == [url]


def test_no_proxy_host_is_fetched_directly(server, tmp_path, fast_settings, monkeypatch):
    """HTTP_PROXY names the loopback server itself, so a proxied request would show up as one."""
    payload = os.urandom(10_000)
    url = server.add("/radar/x.tar", payload)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    result = fetch(Source(key="k", url=url, checksum=f"sha256:{sha256_hex(payload)}"), tmp_path, fast_settings)
    assert result.path.read_bytes() == payload
    assert [r.proxied_for for r in server.requests()] == [None]


def test_sidecar_and_resume_through_a_proxy(server, tmp_path, fast_settings, monkeypatch):
    """Through the proxy path (httpx) too: the sidecar is read, a dropped body resumes with Range."""
    from tests.fetch.fault_server import Fault

    payload = os.urandom(300_000)
    server.add("/radar/x.tar", payload)
    server.add("/radar/x.tar.sha256", f"{sha256_hex(payload)}  x.tar\n".encode())
    server.inject("/radar/x.tar", Fault("drop", at=100_000))
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    fast_settings.checksum_sidecar = "sha256"
    url = "http://archive.invalid:8080/radar/x.tar"
    result = fetch(Source(key="k", url=url), tmp_path, fast_settings)
    assert result.path.read_bytes() == payload and result.verified == f"sha256:{sha256_hex(payload)}"
    assert result.resumed_from > 0
    assert [(r.path, r.range) for r in server.requests()][0] == ("/radar/x.tar.sha256", None)
    assert [r.range for r in server.requests() if r.path == "/radar/x.tar"][-1].startswith("bytes=")
    assert all(r.proxied_for for r in server.requests())
