"""TLS to Redis with the URL's CA file and client certificate. The Valkey of the tests is
built without TLS, so a TLS-terminating proxy that demands a client certificate (signed by
a CA made here with openssl) stands in front of it."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from model_boss import Device, GPUBoss
from model_boss.errors import InvalidLeaseRequest, StoreUnavailable
from model_boss.leases import open_store
from tests.faults.servers import TcpProxy

GPU = [Device(0, 1000)]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca", cwd=d)  # fmt: skip
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "ext",
                 cwd=d)  # fmt: skip
    return d


@pytest.fixture
def tls_port(pki: Path, valkey_url: str) -> Iterator[int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no connection
    port = urlsplit(valkey_url).port
    assert port is not None
    proxy = TcpProxy(port, tls=context).start()
    yield proxy.port
    proxy.stop()


def _url(port: int, pki: Path, *, cert: bool = True, ca: str = "ca.pem") -> str:
    url = f"rediss://127.0.0.1:{port}/0?prefix=tls:&ssl_ca_certs={pki / ca}"
    if cert:
        url += f"&ssl_certfile={pki / 'client.pem'}&ssl_keyfile={pki / 'client.key'}"
    return url


async def test_a_lease_over_tls_with_a_client_certificate(tls_port: int, pki: Path) -> None:
    async with GPUBoss(_url(tls_port, pki), GPU, host="tls") as boss:
        async with boss.acquire(vram_mb=100, timeout=5) as lease:
            assert lease.valid


async def test_without_the_client_certificate_the_server_refuses_us(
    tls_port: int, pki: Path
) -> None:
    with pytest.raises(StoreUnavailable):
        async with GPUBoss(_url(tls_port, pki, cert=False), GPU, host="tls") as boss:
            await boss.acquire(vram_mb=100, timeout=1)


async def test_a_server_not_signed_by_our_ca_is_refused(tls_port: int, pki: Path) -> None:
    with pytest.raises(StoreUnavailable):
        async with GPUBoss(_url(tls_port, pki, ca="client.pem"), GPU, host="tls") as boss:
            await boss.acquire(vram_mb=100, timeout=1)


def test_a_missing_certificate_file_is_an_invalid_url(pki: Path) -> None:
    with pytest.raises(InvalidLeaseRequest, match="TLS files"):
        open_store(f"rediss://127.0.0.1:1/0?ssl_ca_certs={pki / 'nope.pem'}")
