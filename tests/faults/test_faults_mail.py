"""The ``tls``, ``roundtrip`` and ``reports`` probes against misbehaving SMTP and IMAP servers on
loopback.

For each fault: the run fails with a reason naming what went wrong (never a critical finding
for "could not tell"), a healthy target probed at the same time is unaffected, the probe closed
every connection it opened (the fault server sees none left open), and hundreds of repetitions
leave file descriptors, asyncio tasks and memory flat.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from faults.leakcheck import repeat_flat, settle
from faults.mailfault import (
    Behaviour,
    FaultServer,
    imap_drop_after_login,
    imap_huge_folder,
    imap_literals,
    imap_untagged_flood,
    refused_port,
    smtp_drop_mid_tls,
    smtp_endless_reply,
    smtp_garbage_banner,
    smtp_huge_reply,
    smtp_long_line,
    smtp_silent,
    smtp_tls_stall,
)
from servers.mail import free_port

from exporter.config import parse_config
from exporter.findings import CATALOGUE
from exporter.net.dnsclient import make_resolver
from exporter.probes import PROBES
from exporter.results import RunRecord, Target
from exporter.runner import Runtime, run_probe
from exporter.storage import Store

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SmtpFault:
    id: str
    behaviour: Behaviour | None
    """None: nothing listens on the port (connection refused)."""
    reason: str
    timeout: str = "5s"
    repeat: int = 200


SMTP_FAULTS = [
    SmtpFault("refused", None, r"(?i)connect.*refused"),
    SmtpFault("silent", smtp_silent, r"timed out .*greeting", timeout="1s", repeat=100),
    SmtpFault("garbage_banner", smtp_garbage_banner, r"malformed SMTP reply line"),
    SmtpFault("endless_multiline_reply", smtp_endless_reply, r"reply longer than \d+ lines"),
    SmtpFault("drop_mid_tls", smtp_drop_mid_tls, r"TLS handshake after STARTTLS: \w"),
    SmtpFault(
        "tls_stall", smtp_tls_stall, r"timed out .*(TLS|handshake)", timeout="1s", repeat=100
    ),
    # Reported as what they are (a 1 MB line was "cannot parse the server's certificate").
    SmtpFault(
        "line_1mb",
        smtp_long_line,
        r"^reply line longer than 8192 bytes \(waiting for the greeting\)$",
        repeat=50,
    ),
    SmtpFault(
        "reply_1_2mb",
        smtp_huge_reply,
        r"^reply longer than 65536 bytes \(waiting for the greeting\)$",
        repeat=50,
    ),
]


# ----- a healthy SMTP server beside the faulty one ----------------------------------------------


class _Ok:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


@pytest.fixture(scope="module")
def healthy_smtp() -> Iterator[tuple[int, Path]]:
    """A real aiosmtpd server with STARTTLS and a trustme certificate; yields (port, CA file)."""
    import ssl
    import tempfile

    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "mail.example.test")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    tmp = Path(tempfile.mkdtemp(prefix="faults-ca-"))
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    port = free_port()
    controller = Controller(_Ok(), hostname=HOST, port=port, tls_context=ctx, ready_timeout=5)
    controller.start()
    try:
        yield port, ca_file
    finally:
        controller.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
async def fault_server(request: pytest.FixtureRequest) -> AsyncIterator[FaultServer | None]:
    behaviour = request.param
    if behaviour is None:
        yield None
        return
    server = await FaultServer(behaviour).start()
    try:
        yield server
    finally:
        await server.stop()


def tls_setup(
    bad_port: int, good_port: int, ca_file: Path, timeout: str
) -> tuple[Runtime, Target, Target]:
    config = parse_config(
        {
            "global": {"nameservers": ["127.0.0.1:9"]},  # IP literals only: no lookups
            "tls": [
                {"target": f"{HOST}:{bad_port}", "starttls": True, "timeout": timeout},
                {"target": f"{HOST}:{good_port}", "starttls": True, "ca_file": str(ca_file),
                 "server_name": HOST},
            ],
        }
    )  # fmt: skip
    deps = Runtime(make_resolver(["127.0.0.1:9"], attempt_timeout=0.5, lifetime=0.5), config)
    bad, good = PROBES["tls"].targets(config)
    return deps, bad, good


def assert_could_not_tell(rec: RunRecord, reason: str) -> None:
    assert rec.result.error is not None, "the fault went unnoticed"
    assert re.search(reason, rec.result.error), rec.result.error
    critical = [f.code for f in rec.result.findings if CATALOGUE[f.code].severity == "critical"]
    assert critical == [], rec.result.findings


def assert_healthy_tls(rec: RunRecord) -> None:
    assert rec.result.error is None, rec.result.error
    values = {s.metric: s.value for s in rec.result.samples}
    assert values["tls_handshake_success"] == 1
    assert values["tls_cert_valid"] == 1


@pytest.mark.parametrize(
    ("fault", "fault_server"),
    [(f, f.behaviour) for f in SMTP_FAULTS],
    ids=[f.id for f in SMTP_FAULTS],
    indirect=["fault_server"],
)
async def test_tls_probe_smtp_fault(
    fault: SmtpFault, fault_server: FaultServer | None, healthy_smtp: tuple[int, Path]
) -> None:
    good_port, ca_file = healthy_smtp
    port = fault_server.port if fault_server is not None else refused_port()
    deps, bad, good = tls_setup(port, good_port, ca_file, fault.timeout)
    kind = PROBES["tls"]

    bad_rec, good_rec = await asyncio.gather(
        run_probe(kind, bad, deps), run_probe(kind, good, deps)
    )
    assert_could_not_tell(bad_rec, fault.reason)
    assert_healthy_tls(good_rec)

    async def bad_once() -> None:
        assert_could_not_tell(await run_probe(kind, bad, deps), fault.reason)

    await repeat_flat(bad_once, warmup=20, repeat=fault.repeat, batch=50)
    await settle()
    if fault_server is not None:
        assert fault_server.connections >= fault.repeat
        assert fault_server.open == 0, "the probe left connections open"
    assert_healthy_tls(await run_probe(kind, good, deps))


# ----- roundtrip: IMAP faults (the run stops before anything is sent) ------------------------

IMAP_FAULTS = [
    ("drop_after_login", imap_drop_after_login, r"imap 127\.0\.0\.1:\d+: .*(closed|lost)"),
    ("huge_folder", imap_huge_folder, r"imap 127\.0\.0\.1:\d+: response line too long"),
    # What a hostile server sends to exhaust memory: each stops at its limit (net/imap.py).
    (
        "literal_16mb",
        imap_literals(1, 16 << 20),
        r"imap 127\.0\.0\.1:\d+: literal of 16777216 bytes \(over 1 MiB\)",
    ),
    (
        "response_40_literals_of_1mb",
        imap_literals(40, 1 << 20),
        r"imap 127\.0\.0\.1:\d+: response over 4 MiB",
    ),
    # 10,000 lines a run, in the test's own loop beside its server: fewer runs at once.
    (
        "untagged_flood",
        imap_untagged_flood,
        r"imap 127\.0\.0\.1:\d+: more than 10000 responses to (SELECT|EXAMINE|LIST)",
        5,
    ),
]


def roundtrip_config(imap_port: int, smtp_port: int, tmp_path: Path) -> Any:
    pw = tmp_path / "imap-password"
    pw.write_text("imap-secret\n")
    return parse_config(
        {
            "global": {"nameservers": ["127.0.0.1:9"]},
            "roundtrip": [
                {
                    "name": "faulty",
                    "from": "probe@example.test",
                    "to": "inbox@example.test",
                    "timeout": "5s",
                    "smtp": {"host": HOST, "port": smtp_port, "security": "none"},
                    "imap": {"host": HOST, "port": imap_port, "security": "none",
                             "username": "inbox@example.test", "password_file": str(pw)},
                }
            ],
        }
    )  # fmt: skip


@pytest.mark.parametrize(
    ("reason", "batch", "fault_server"),
    [(f[2], f[3] if len(f) > 3 else 25, f[1]) for f in IMAP_FAULTS],
    ids=[f[0] for f in IMAP_FAULTS],
    indirect=["fault_server"],
)
async def test_roundtrip_imap_fault(
    reason: str,
    batch: int,
    fault_server: FaultServer,
    healthy_smtp: tuple[int, Path],
    tmp_path: Path,
) -> None:
    config = roundtrip_config(fault_server.port, healthy_smtp[0], tmp_path)
    deps = Runtime(make_resolver(["127.0.0.1:9"], attempt_timeout=0.5, lifetime=0.5), config)
    (target,) = PROBES["roundtrip"].targets(config)
    kind = PROBES["roundtrip"]

    rec = await run_probe(kind, target, deps)
    assert_could_not_tell(rec, reason)
    assert "imap-secret" not in repr(rec)

    async def once() -> None:
        assert_could_not_tell(await run_probe(kind, target, deps), reason)

    await repeat_flat(once, warmup=10, repeat=100, batch=batch)
    await settle()
    assert fault_server.open == 0, "the probe left IMAP connections open"


@pytest.mark.parametrize(
    ("reason", "batch", "fault_server"),
    [(f[2], f[3] if len(f) > 3 else 25, f[1]) for f in IMAP_FAULTS],
    ids=[f[0] for f in IMAP_FAULTS],
    indirect=["fault_server"],
)
async def test_reports_imap_fault(
    reason: str, batch: int, fault_server: FaultServer, tmp_path: Path
) -> None:
    """The reports probe: could not tell, the stored counts still served, nothing left open.

    Runs go ``batch`` at a time, as in the round-trip test: 25 floods of 10,000 lines at once,
    served from the test's own loop, did not reach the cap within the 4 s mailbox budget on a
    loaded machine (the run then failed as a timeout, not as the cap)."""
    pw = tmp_path / "imap-password"
    pw.write_text("imap-secret\n")
    config = parse_config({
        "global": {"nameservers": ["127.0.0.1:9"], "timeout": "5s"},
        "reports": [{"name": "rua", "imap": {
            "host": HOST, "port": fault_server.port, "security": "none",
            "username": "dmarc@example.test", "password_file": str(pw)}}],
    })  # fmt: skip
    store = await Store.open(tmp_path / "data")
    try:
        labels = {"domain": "example.test", "reporter": "r", "dmarc": "pass", "disposition": "none"}
        await store.transact(lambda tx: tx.add("dmarc_report_messages_total", labels, 7))
        deps = Runtime(make_resolver(["127.0.0.1:9"], attempt_timeout=0.5, lifetime=0.5), config,
                       store=store)  # fmt: skip
        kind = PROBES["reports"]
        (target,) = kind.targets(config)

        async def once() -> None:
            rec = await run_probe(kind, target, deps)
            assert_could_not_tell(rec, reason)
            assert "imap-secret" not in repr(rec)
            served = {s.labels: s.value for s in rec.result.samples
                      if s.metric == "dmarc_report_messages_total"}  # fmt: skip
            assert served[tuple(sorted(labels.items()))] == 7

        await once()
        await repeat_flat(once, warmup=5, repeat=50, batch=batch)
        await settle()
        assert fault_server.open == 0, "the probe left IMAP connections open"
    finally:
        await store.aclose()


def test_hostile_imap_run_memory_is_bounded() -> None:
    """One run against each hostile IMAP server, in a fresh process: the resident set grows by
    less than the limits allow together (4 MiB a response, 16 MiB a command, the reader's buffer),
    where before them one response of 40 literals of 16 MB took 767 MB. Numbers: bench/README.md
    and docs/HARDENING.md (``python -m bench.imap_hostile``)."""
    res = subprocess.run(
        [sys.executable, "-m", "bench.imap_hostile"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout)
    assert len(report) == 5
    for name, run in report.items():
        print(f"{name}: peak {run['peak_mib']} MiB, growth {run['growth_mib']} MiB")
        assert run["error"] and re.search(r"over \d+ MiB|more than \d+ responses", run["error"])
        assert run["growth_mib"] < 32, (name, run)
