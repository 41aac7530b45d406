"""A ``ca_file`` that is no regular file is refused before OpenSSL opens it: a FIFO made OpenSSL
wait for a writer, on the event loop (the ``tls`` and ``mta_sts`` probes: the whole daemon froze)
or in a worker thread (the round trip and the reports mailbox: a worker held each run)."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from conftest import make_ctx
from dnsserver import DnsServer

from exporter.config import parse_config
from exporter.net.certs import trust_store
from exporter.net.tlsctx import verifying_context
from exporter.probes import PROBES


@contextlib.contextmanager
def fifo_with_rescue(path: Path, pem: bytes) -> Iterator[Path]:
    """A FIFO at ``path``. Should anything open it for reading (the defect), a helper thread
    writes ``pem`` into it, so that the test fails on the result instead of hanging."""
    os.mkfifo(path)
    stop = threading.Event()

    def rescue() -> None:
        while not stop.wait(0.05):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no reader yet
                    continue
                raise
            with contextlib.suppress(OSError):
                os.write(fd, pem)
            os.close(fd)

    thread = threading.Thread(target=rescue, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join(5)


@pytest.fixture
def ca_pem() -> bytes:
    return trustme.CA().cert_pem.bytes()


def test_trust_store_refuses_a_fifo(tmp_path: Path, ca_pem: bytes) -> None:
    with (
        fifo_with_rescue(tmp_path / "ca.pem", ca_pem) as fifo,
        pytest.raises(OSError, match="not a regular file"),
    ):
        trust_store(str(fifo))


def test_trust_store_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="not a regular file"):
        trust_store(str(tmp_path))


async def test_verifying_context_refuses_a_fifo(tmp_path: Path, ca_pem: bytes) -> None:
    with (
        fifo_with_rescue(tmp_path / "ca.pem", ca_pem) as fifo,
        pytest.raises(OSError, match="not a regular file"),
    ):
        await verifying_context(str(fifo))


async def test_verifying_context_takes_a_regular_file(tmp_path: Path, ca_pem: bytes) -> None:
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    ctx = await verifying_context(str(tmp_path / "ca.pem"))
    assert ctx.cert_store_stats()["x509_ca"] >= 1


async def test_tls_probe_with_a_fifo_ca_file_fails_its_run(
    tmp_path: Path, ca_pem: bytes, dns_server: DnsServer
) -> None:
    with fifo_with_rescue(tmp_path / "ca.pem", ca_pem) as fifo:
        config = parse_config({
            "global": {"nameservers": [dns_server.address]},
            "tls": [{"target": "127.0.0.1:9", "ca_file": str(fifo)}],
        })  # fmt: skip
        kind = PROBES["tls"]
        (target,) = kind.targets(config)
        result = await kind.run(target, make_ctx(dns_server, config=config, timeout=5.0))
    text = " ".join([result.error or "", *(f.evidence or "" for f in result.findings)])
    assert "not a regular file" in text, (result.error, result.findings)
