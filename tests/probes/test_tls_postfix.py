"""The tls probe against a real postfix (Debian ``postfix``) on loopback: STARTTLS and implicit TLS.

Postfix runs from its own temporary directory on free 127.0.0.1 ports (``master -c DIR -s`` in
the foreground, stopped by PID); its certificate comes from a trustme CA handed to the probe as
``ca_file``. It delivers nothing: every transport is ``error:``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from conftest import make_ctx
from dnsserver import DnsServer
from servers.mail import _MASTER_SERVICES, POSTFIX_MASTER, _stop, free_port

from exporter.config import parse_config
from exporter.probes.tls import PROBE
from exporter.results import ProbeResult

HOST = "mail.example.test"


@dataclass
class Postfix:
    dir: Path
    starttls_port: int
    implicit_port: int
    ca_file: str
    not_after: dt.datetime


def _wait(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text(errors="replace") if log.exists() else ""
            bad = [line for line in text.splitlines() if "fatal" in line or "error" in line]
            raise RuntimeError(f"postfix exited with {proc.returncode}: {bad[-5:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"postfix did not listen on {port}")


@contextlib.contextmanager
def run_postfix(not_after: dt.datetime, process_limit: int = 100) -> Iterator[Postfix]:
    """A postfix with a STARTTLS and an implicit-TLS listener and a trustme certificate for
    ``mail.example.test`` expiring at ``not_after`` (also used by bench/tls_bench.py)."""
    d = Path(tempfile.mkdtemp(prefix="tls-postfix-"))
    d.chmod(0o755)  # postfix opens data_directory files as its mail_owner, who must get there
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, not_after=not_after)
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    (d / "queue").mkdir()
    (d / "data").mkdir()
    shutil.chown(d / "data", "postfix")
    starttls_port, implicit_port = free_port(), free_port()
    (d / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {HOST}
mydestination =
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = no
smtp_dns_support_level = disabled
smtpd_tls_cert_file = {d}/cert.pem
smtpd_tls_key_file = {d}/key.pem
smtpd_tls_security_level = may
default_process_limit = {process_limit}
default_transport = error:outside delivery disabled in tests
relay_transport = error:outside delivery disabled in tests
""")
    (d / "master.cf").write_text(
        f"127.0.0.1:{starttls_port} inet n - n - - smtpd\n"
        f"127.0.0.1:{implicit_port} inet n - n - - smtpd\n"
        "  -o smtpd_tls_wrappermode=yes\n" + _MASTER_SERVICES
    )
    check = subprocess.run(["postfix", "-c", str(d), "check"], capture_output=True, timeout=30)
    if check.returncode != 0:
        raise RuntimeError(f"postfix check failed: {check.stderr!r}")
    proc = subprocess.Popen(
        [POSTFIX_MASTER, "-c", str(d), "-s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(starttls_port, proc, d / "maillog")
        _wait(implicit_port, proc, d / "maillog")
        yield Postfix(d, starttls_port, implicit_port, str(d / "ca.pem"), not_after)
    finally:
        _stop(proc)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def postfix() -> Iterator[Postfix]:
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
async def test_postfix(postfix: Postfix, dns_server: DnsServer, implicit: bool) -> None:
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
