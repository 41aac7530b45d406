"""The tls probe against a real postfix (Debian ``postfix``) on loopback: STARTTLS and implicit TLS.

Postfix is the tests' one postfix (:class:`servers.mail.Postfix`, without dovecot: it delivers
nothing, every transport is ``error:``); its certificate comes from a trustme CA handed to the
probe as ``ca_file``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from conftest import make_ctx
from dnsserver import DnsServer
from servers.mail import POSTFIX_MASTER, Postfix

from exporter.config import parse_config
from exporter.probes.tls import PROBE
from exporter.results import ProbeResult

HOST = "mail.example.test"


@dataclass
class PostfixTls:
    dir: Path
    starttls_port: int
    implicit_port: int
    ca_file: str
    not_after: dt.datetime


@contextlib.contextmanager
def run_postfix(not_after: dt.datetime, process_limit: int = 100) -> Iterator[PostfixTls]:
    """A postfix with a STARTTLS and an implicit-TLS listener and a trustme certificate for
    ``mail.example.test`` expiring at ``not_after`` (also used by bench/tls_bench.py)."""
    d = Path(tempfile.mkdtemp(prefix="tls-postfix-"))
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, not_after=not_after)
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    for name in ("cert.pem", "key.pem"):
        (d / name).chmod(0o644)
    d.chmod(0o755)
    server = Postfix(
        (d / "cert.pem", d / "key.pem"),
        myhostname=HOST,
        main={"default_process_limit": str(process_limit)},
    )
    try:
        server.start()
        yield PostfixTls(
            server.dir, server.smtp_port, server.smtps_port, str(d / "ca.pem"), not_after
        )
    finally:
        server.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def postfix() -> Iterator[PostfixTls]:
    if shutil.which("postfix") is None or not Path(POSTFIX_MASTER).exists():
        pytest.fail("Debian package postfix is not installed (scripts/test installs it)")
    not_after = (dt.datetime.now(dt.UTC) + dt.timedelta(days=10)).replace(microsecond=0)
    with run_postfix(not_after) as server:
        yield server


async def probe(dns: DnsServer, entry: dict[str, object]) -> ProbeResult:
    dns.add(HOST, "A", "127.0.0.1")
    config = parse_config({"global": {"nameservers": [dns.address]}, "tls": [entry]})
    (target,) = PROBE.targets(config)
    return await PROBE.run(target, make_ctx(dns, config=config, timeout=10))


def value(result: ProbeResult, metric: str) -> float:
    (found,) = [s.value for s in result.samples if s.metric == metric]
    return found


@pytest.mark.parametrize("implicit", [False, True])
async def test_postfix(postfix: PostfixTls, dns_server: DnsServer, implicit: bool) -> None:
    port = postfix.implicit_port if implicit else postfix.starttls_port
    entry = {"target": f"{HOST}:{port}", "ca_file": postfix.ca_file, "starttls": not implicit}
    result = await probe(dns_server, entry)
    assert result.error is None
    assert result.details["greeting"].startswith(f"220 {HOST} ESMTP")
    assert value(result, "tls_handshake_success") == 1
    assert value(result, "tls_cert_valid") == 1
    assert value(result, "tls_cert_not_after_timestamp_seconds") == postfix.not_after.timestamp()
    if not implicit:
        assert value(result, "smtp_starttls_offered") == 1
    # Ten days left: a warning, not yet critical.
    assert [(f.code, f.severity) for f in result.findings] == [("tls_cert_expiring", None)]
