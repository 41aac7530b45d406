"""The roundtrip probe over real servers on loopback.

Two paths into one real dovecot (IMAP + LMTP, started once for the module):

* postfix -> LMTP -> dovecot, the real MTA path (STARTTLS and implicit TLS submission, SMTP AUTH
  through dovecot, relay rejection);
* an in-process aiosmtpd server standing in for the receiving MTA: it adds an
  ``Authentication-Results`` field, then hands the message to dovecot over LMTP — or drops it,
  holds it for a late delivery, delivers it twice, or rejects it.

Host names are resolved through a real loopback DNS server (``mail.example.test``) and verified
against a trustme certificate given as ``ca_file``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from dnsserver import DnsServer
from prometheus_client.parser import text_string_to_metric_families
from servers.mail import (
    HOST,
    MAIL_NAME,
    NOIDLE_HOST,
    Dovecot,
    MailCerts,
    Postfix,
    _tempdir,
    free_port,
)

from exporter.collector import exposition
from exporter.config import ConfigError, parse_config
from exporter.net.dnsclient import make_resolver
from exporter.probes import PROBES
from exporter.probes.roundtrip import HEADER, RoundtripProbe
from exporter.results import RunRecord, Target
from exporter.runner import Runtime, run_probe
from exporter.storage import Store


@pytest.fixture(autouse=True, scope="module")
def _servers_installed() -> None:
    # A failure, not a skip: scripts/test installs them, and a skip must not look green.
    assert shutil.which("dovecot") and Path("/usr/lib/postfix/sbin/master").exists(), (
        "needs Debian packages dovecot-imapd dovecot-lmtpd postfix (scripts/test installs them)"
    )


USER = "probe@example.test"
IMAP_PASSWORD = "imap-S3cret-pw"
SMTP_PASSWORD = "smtp-S3cret-pw"  # postfix authenticates SMTP through dovecot: a second account
SENDER = "sender@example.test"


# ----- servers (module scope: dovecot takes seconds to stop) ----------------------------------


@pytest.fixture(scope="module")
def certs() -> Iterator[MailCerts]:
    d = _tempdir("certs-")
    yield MailCerts(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def dovecot(certs: MailCerts) -> Iterator[Dovecot]:
    server = Dovecot({USER: IMAP_PASSWORD, SENDER: SMTP_PASSWORD}, certs).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def postfix(dovecot: Dovecot, certs: MailCerts) -> Iterator[Postfix]:
    server = Postfix(dovecot, certs).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def empty_mailbox(request: pytest.FixtureRequest) -> None:
    if "dovecot" in request.fixturenames:
        request.getfixturevalue("dovecot").clear(USER)


class Receiver:
    """aiosmtpd handler acting as the receiving MTA in front of dovecot."""

    def __init__(self, dovecot: Dovecot) -> None:
        self.dovecot = dovecot
        self.mode = "deliver"  # deliver | drop | hold | twice
        self.auth_results: str | None = None
        self.reject: str | None = None  # an SMTP reply to RCPT TO, e.g. "550 5.1.1 unknown"
        self.received: list[bytes] = []
        self.held: list[tuple[list[str], bytes]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:  # fmt: skip
        if self.reject:
            return self.reject
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content
        self.received.append(data)
        if self.auth_results:
            data = f"Authentication-Results: {self.auth_results}\r\n".encode() + data
        rcpts = list(envelope.rcpt_tos)
        if self.mode == "drop":
            return "250 OK"
        if self.mode == "hold":
            self.held.append((rcpts, data))
            return "250 OK"
        for _ in range(2 if self.mode == "twice" else 1):
            for rcpt in rcpts:
                await asyncio.to_thread(self.dovecot.deliver, rcpt, data)
        return "250 OK"

    def release(self) -> None:
        """Deliver the held messages now (a late arrival)."""
        for rcpts, data in self.held:
            for rcpt in rcpts:
                self.dovecot.deliver(rcpt, data)
        self.held.clear()


@pytest.fixture
def receiver(dovecot: Dovecot) -> Iterator[tuple[Receiver, int]]:
    handler = Receiver(dovecot)
    port = free_port()
    controller = Controller(
        handler, hostname=HOST, port=port, server_hostname=MAIL_NAME, ready_timeout=5
    )
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer()
    server.add(MAIL_NAME, "A", HOST)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def imap_password_file(tmp_path: Path) -> Path:
    path = tmp_path / "imap-password"
    path.write_text(IMAP_PASSWORD + "\n")
    return path


# ----- helpers --------------------------------------------------------------------------------


def make_config(dns: DnsServer, certs: MailCerts, dovecot: Dovecot, pwfile: Path, *,
                smtp: dict[str, Any], imap: dict[str, Any] | None = None,
                name: str = "primary", to: str = USER, timeout: str = "10s") -> Any:  # fmt: skip
    imap_section = {
        "host": MAIL_NAME,
        "port": dovecot.imaps_port,
        "security": "tls",
        "username": USER,
        "password_file": str(pwfile),
        "spam_folder": "Junk",
        "ca_file": str(certs.ca_file),
        **(imap or {}),
    }
    return parse_config(
        {
            "global": {"nameservers": [dns.address]},
            "roundtrip": [
                {
                    "name": name,
                    "from": SENDER,
                    "to": to,
                    "timeout": timeout,
                    "smtp": {"host": MAIL_NAME, "ca_file": str(certs.ca_file), **smtp},
                    "imap": imap_section,
                }
            ],
        }
    )


async def run(
    config: Any,
    dns: DnsServer,
    probe: RoundtripProbe | None = None,
    runtime: Runtime | None = None,
) -> RunRecord:
    """One run, on ``runtime`` (what the daemon keeps across the runs of a config) or a new
    one."""
    probe = probe or RoundtripProbe()
    (target,) = probe.targets(config)
    if runtime is None:
        resolver = make_resolver([dns.address], attempt_timeout=1.0, lifetime=1.0)
        runtime = Runtime(resolver, config)
    return await run_probe(probe, target, runtime)


def values(rec: RunRecord) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.metric, s.labels): s.value for s in rec.result.samples}


def value(rec: RunRecord, metric: str, **labels: str) -> float | None:
    want = tuple(sorted({"target": rec.target.name, **labels}.items()))
    return values(rec).get((metric, want))


def codes(rec: RunRecord) -> set[str]:
    return {f.code for f in rec.result.findings}


def probe_messages(dovecot: Dovecot, folder: str) -> list[bytes]:
    return [m for m in dovecot.messages(USER, folder) if HEADER.encode() in m]


def stored_flags(dovecot: Dovecot) -> list[str]:
    """Each INBOX message's flags, without the per-session \\Recent."""
    return [f.replace("\\Recent", "").replace("( ", "(").replace(" )", ")")
            for f in dovecot.flags(USER, "INBOX")]  # fmt: skip


def plain_smtp(port: int) -> dict[str, Any]:
    return {"host": HOST, "port": port, "security": "none"}


# ----- the real MTA path: postfix -> LMTP -> dovecot ------------------------------------------


async def test_inbox_delivery_through_postfix_starttls_and_auth(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot, postfix: Postfix,
    imap_password_file: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("RT_SMTP_PASSWORD", SMTP_PASSWORD)
    smtp = {"port": postfix.smtp_port, "security": "starttls", "username": SENDER,
            "password_env": "RT_SMTP_PASSWORD"}  # fmt: skip
    config = make_config(dns_server, certs, dovecot, imap_password_file, smtp=smtp)
    rec = await run(config, dns_server)
    assert rec.result.error is None, rec.result
    assert value(rec, "roundtrip_success") == 1
    assert value(rec, "roundtrip_spam") == 0
    duration = value(rec, "roundtrip_duration_seconds")
    send = value(rec, "roundtrip_send_duration_seconds")
    assert duration is not None and send is not None and 0 < send < duration
    assert value(rec, "roundtrip_last_success_timestamp_seconds") is not None
    assert rec.result.details["found_in"] == "INBOX"
    assert rec.result.details["imap_mode"] == "idle"
    assert rec.result.findings == []
    # postfix saw the authenticated submission; the mailbox holds nothing of the probe's now.
    assert f"sasl_username={SENDER}" in postfix.log()
    assert probe_messages(dovecot, "INBOX") == [] and probe_messages(dovecot, "Junk") == []


async def test_spam_folder_delivery(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot, postfix: Postfix,
    imap_password_file: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # lmtp_save_to_detail_mailbox: user+Junk@ lands in Junk, as a spam filter would put it.
    monkeypatch.setenv("RT_SMTP_PASSWORD", SMTP_PASSWORD)
    smtp = {"port": postfix.smtps_port, "security": "tls", "username": SENDER,
            "password_env": "RT_SMTP_PASSWORD"}  # fmt: skip
    config = make_config(dns_server, certs, dovecot, imap_password_file, smtp=smtp,
                         to="probe+Junk@example.test")  # fmt: skip
    rec = await run(config, dns_server)
    assert rec.result.error is None, rec.result
    assert value(rec, "roundtrip_success") == 1
    assert value(rec, "roundtrip_spam") == 1
    assert rec.result.details["found_in"] == "Junk"
    assert codes(rec) == {"roundtrip_in_spam"}
    assert probe_messages(dovecot, "Junk") == []


async def test_smtp_rejection_reports_the_code(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot, postfix: Postfix,
    imap_password_file: Path,
) -> None:  # fmt: skip
    # Unauthenticated relay to a foreign domain: postfix answers 554 5.7.1 Relay access denied.
    smtp = {"port": postfix.smtp_port, "security": "starttls"}
    config = make_config(dns_server, certs, dovecot, imap_password_file, smtp=smtp,
                         to="someone@elsewhere.test")  # fmt: skip
    rec = await run(config, dns_server)
    (finding,) = rec.result.findings
    assert finding.code == "roundtrip_send_rejected"
    assert "RCPT TO rejected with 554" in finding.evidence
    assert "Relay access denied" in finding.evidence
    assert finding.severity is None  # the catalogue's critical: a definite rejection
    assert rec.result.error is None  # the server answered: not a "could not tell"
    assert value(rec, "roundtrip_success") == 0
    assert value(rec, "roundtrip_send_duration_seconds") is None


# ----- the in-process receiving MTA (aiosmtpd -> LMTP -> dovecot) -----------------------------


async def test_authentication_results_become_metrics_and_findings(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot,
    receiver: tuple[Receiver, int], imap_password_file: Path,
) -> None:  # fmt: skip
    handler, port = receiver
    handler.auth_results = (
        "mx.example.test (comment; with semicolon); spf=pass smtp.mailfrom=example.test;"
        " dkim=fail (bad signature) header.d=example.test header.b=abc/+=;"
        " dkim=pass header.d=other.test; dmarc=fail (p=reject) header.from=example.test"
    )
    config = make_config(dns_server, certs, dovecot, imap_password_file, smtp=plain_smtp(port))
    rec = await run(config, dns_server)
    assert rec.result.error is None, rec.result
    for method, result in (("spf", "pass"), ("dkim", "pass"), ("dmarc", "fail")):
        assert value(rec, "roundtrip_auth_result", method=method, result=result) == 1
        assert value(rec, "roundtrip_auth_result", method=method, result="none") == 0
    (finding,) = rec.result.findings
    assert (finding.code, finding.subject, finding.severity) == (
        "roundtrip_auth_fail",
        "dmarc",
        "critical",
    )
    # The message as sent has the RFC 5322 shape.
    sent = handler.received[0]
    for name in (b"Date:", b"Message-ID:", b"From: " + SENDER.encode(), b"To: " + USER.encode(),
                 b"Subject:", HEADER.encode() + b": primary/"):  # fmt: skip
        assert re.search(b"^" + re.escape(name), sent, re.M), name
    assert b"\r\n\r\nThis message was sent by deliverability-exporter" in sent


async def test_message_that_never_arrives_keeps_last_success(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot,
    receiver: tuple[Receiver, int], imap_password_file: Path,
) -> None:  # fmt: skip
    handler, port = receiver
    probe = RoundtripProbe()
    config = make_config(dns_server, certs, dovecot, imap_password_file, smtp=plain_smtp(port),
                         timeout="1500ms")  # fmt: skip
    resolver = make_resolver([dns_server.address], attempt_timeout=1.0, lifetime=1.0)
    runtime = Runtime(resolver, config)
    ok = await run(config, dns_server, probe, runtime)
    assert value(ok, "roundtrip_success") == 1
    last = value(ok, "roundtrip_last_success_timestamp_seconds")
    handler.mode = "drop"
    lost = await run(config, dns_server, probe, runtime)
    assert lost.result.error is None  # it ran to completion: the mail did not arrive
    assert codes(lost) == {"roundtrip_not_delivered"}
    assert value(lost, "roundtrip_success") == 0
    assert value(lost, "roundtrip_duration_seconds") is None
    assert value(lost, "roundtrip_send_duration_seconds") is not None
    assert value(lost, "roundtrip_last_success_timestamp_seconds") == last


async def test_last_success_survives_a_restart_through_the_store(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot,
    receiver: tuple[Receiver, int], imap_password_file: Path, tmp_path: Path,
) -> None:  # fmt: skip
    handler, port = receiver
    config = make_config(dns_server, certs, dovecot, imap_password_file, smtp=plain_smtp(port),
                         timeout="1500ms")  # fmt: skip
    resolver = make_resolver([dns_server.address], attempt_timeout=1.0, lifetime=1.0)
    store = await Store.open(tmp_path)
    ok = await run(config, dns_server, runtime=Runtime(resolver, config, store=store))
    last = value(ok, "roundtrip_last_success_timestamp_seconds")
    assert last is not None
    await store.aclose()
    handler.mode = "drop"  # after the restart the mail is lost: the last success is the old one
    store = await Store.open(tmp_path)
    lost = await run(config, dns_server, runtime=Runtime(resolver, config, store=store))
    await store.aclose()
    assert value(lost, "roundtrip_success") == 0
    assert value(lost, "roundtrip_last_success_timestamp_seconds") == last
    # Without the store (a fresh runtime, as `check` runs it) nothing is remembered.
    none = await run(config, dns_server)
    assert value(none, "roundtrip_last_success_timestamp_seconds") is None


async def test_late_arrival_is_cleaned_up_by_the_next_run(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot,
    receiver: tuple[Receiver, int], imap_password_file: Path,
) -> None:  # fmt: skip
    handler, port = receiver
    probe = RoundtripProbe()
    config = make_config(dns_server, certs, dovecot, imap_password_file, smtp=plain_smtp(port),
                         timeout="1500ms")  # fmt: skip
    handler.mode = "hold"
    first = await run(config, dns_server, probe)
    assert codes(first) == {"roundtrip_not_delivered"}
    await asyncio.to_thread(handler.release)  # arrives after the run gave up
    assert len(probe_messages(dovecot, "INBOX")) == 1
    handler.mode = "deliver"
    second = await run(config, dns_server, probe)
    assert value(second, "roundtrip_success") == 1
    assert value(second, "roundtrip_stale_messages_deleted") == 1
    assert probe_messages(dovecot, "INBOX") == []


async def test_duplicate_delivery_is_found_and_both_copies_deleted(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot,
    receiver: tuple[Receiver, int], imap_password_file: Path,
) -> None:  # fmt: skip
    handler, port = receiver
    handler.mode = "twice"
    config = make_config(dns_server, certs, dovecot, imap_password_file, smtp=plain_smtp(port))
    rec = await run(config, dns_server)
    assert value(rec, "roundtrip_success") == 1
    assert rec.result.details.get("copies") == "2"
    assert probe_messages(dovecot, "INBOX") == []


async def test_temporary_rejection_is_a_warning_and_an_error(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot,
    receiver: tuple[Receiver, int], imap_password_file: Path,
) -> None:  # fmt: skip
    handler, port = receiver
    handler.reject = "451 4.7.1 greylisted, try again later"
    config = make_config(dns_server, certs, dovecot, imap_password_file, smtp=plain_smtp(port))
    rec = await run(config, dns_server)
    (finding,) = rec.result.findings
    assert finding.code == "roundtrip_send_rejected" and finding.severity == "warning"
    assert "451" in finding.evidence and rec.result.error is not None


async def test_other_messages_are_never_touched(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot,
    receiver: tuple[Receiver, int], imap_password_file: Path,
) -> None:  # fmt: skip
    _, port = receiver
    hexid = "0123456789abcdef0123456789abcdef"
    others = [
        b"Subject: hello\r\n\r\nan ordinary message\r\n",
        # IMAP HEADER search is a case-insensitive substring match: all of these match
        # 'primary/' on the server and must be recognised as not ours.
        f"{HEADER}: xprimary/{hexid}\r\nSubject: probe 'xprimary'\r\n\r\nx\r\n".encode(),
        f"{HEADER}: PRIMARY/{hexid}\r\nSubject: probe 'PRIMARY'\r\n\r\nx\r\n".encode(),
        f"{HEADER}: primary/not-a-probe-id\r\nSubject: odd\r\n\r\nx\r\n".encode(),
        f"Subject: mentions {HEADER}: primary/{hexid}\r\n\r\nx\r\n".encode(),
    ]
    for folder in ("INBOX", "Junk"):
        for msg in others:
            await asyncio.to_thread(dovecot.append, USER, folder, msg)
    # A message the owner flagged \Deleted but did not expunge: still not ours to expunge.
    await asyncio.to_thread(dovecot.append, USER, "INBOX", b"Subject: doomed\r\n\r\nx\r\n",
                            "\\Deleted")  # fmt: skip
    before = {f: await asyncio.to_thread(dovecot.messages, USER, f) for f in ("INBOX", "Junk")}
    flags_before = await asyncio.to_thread(stored_flags, dovecot)
    probe = RoundtripProbe()
    for i in range(6):
        to = USER if i % 2 else "probe+Junk@example.test"
        config = make_config(dns_server, certs, dovecot, imap_password_file,
                             smtp=plain_smtp(port), to=to)  # fmt: skip
        rec = await run(config, dns_server, probe)
        assert value(rec, "roundtrip_success") == 1, rec.result
    after = {f: await asyncio.to_thread(dovecot.messages, USER, f) for f in ("INBOX", "Junk")}
    assert after == before
    assert await asyncio.to_thread(stored_flags, dovecot) == flags_before


async def test_polling_without_idle_and_without_uidplus(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot,
    receiver: tuple[Receiver, int], imap_password_file: Path,
) -> None:  # fmt: skip
    # Connections to NOIDLE_HOST see neither IDLE nor UIDPLUS: the probe polls, and expunges
    # only when no other message is flagged \Deleted.
    _, port = receiver
    imap = {"host": NOIDLE_HOST, "port": dovecot.imap_port, "security": "starttls",
            "poll_interval": "200ms"}  # fmt: skip
    config = make_config(dns_server, certs, dovecot, imap_password_file, smtp=plain_smtp(port),
                         imap=imap)  # fmt: skip
    rec = await run(config, dns_server)
    assert value(rec, "roundtrip_success") == 1, rec.result
    assert rec.result.details["imap_mode"] == "poll"
    assert probe_messages(dovecot, "INBOX") == []
    # Someone else's \Deleted message blocks the plain EXPUNGE: ours stays flagged, theirs stays.
    await asyncio.to_thread(dovecot.append, USER, "INBOX", b"Subject: theirs\r\n\r\nx\r\n",
                            "\\Deleted")  # fmt: skip
    rec = await run(config, dns_server)
    assert value(rec, "roundtrip_success") == 1
    assert "UIDPLUS" in rec.result.details["cleanup_INBOX"]
    inbox = await asyncio.to_thread(dovecot.messages, USER, "INBOX")
    assert len(inbox) == 2 and any(b"Subject: theirs" in m for m in inbox)


async def test_missing_spam_folder_is_a_finding_and_inbox_still_watched(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot,
    receiver: tuple[Receiver, int], imap_password_file: Path,
) -> None:  # fmt: skip
    _, port = receiver
    config = make_config(dns_server, certs, dovecot, imap_password_file, smtp=plain_smtp(port),
                         imap={"spam_folder": "NoSuchSpam"})  # fmt: skip
    rec = await run(config, dns_server)
    assert value(rec, "roundtrip_success") == 1
    assert codes(rec) == {"roundtrip_spam_folder_missing"}


async def test_untrusted_certificate_is_a_tls_finding(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot,
    receiver: tuple[Receiver, int], imap_password_file: Path,
) -> None:  # fmt: skip
    _, port = receiver
    config = make_config(dns_server, certs, dovecot, imap_password_file, smtp=plain_smtp(port),
                         imap={"ca_file": None})  # fmt: skip
    rec = await run(config, dns_server)
    assert codes(rec) == {"roundtrip_tls_failed"}
    assert "certificate" in (rec.result.error or "")


async def test_unreachable_and_unresolvable_servers(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot, imap_password_file: Path,
    receiver: tuple[Receiver, int],
) -> None:  # fmt: skip
    _, port = receiver
    with closed_port() as port_nobody_listens_on:
        config = make_config(dns_server, certs, dovecot, imap_password_file,
                             smtp=plain_smtp(port_nobody_listens_on))  # fmt: skip
        rec = await run(config, dns_server)
    (finding,) = rec.result.findings
    assert (finding.code, finding.subject) == ("roundtrip_connect_failed", "smtp")
    assert "refused" in finding.evidence.lower()
    config = make_config(dns_server, certs, dovecot, imap_password_file, smtp=plain_smtp(port),
                         imap={"host": "nowhere.example.test"})  # fmt: skip
    rec = await run(config, dns_server)
    (finding,) = rec.result.findings
    assert (finding.code, finding.subject) == ("roundtrip_connect_failed", "imap")
    assert "cannot resolve" in finding.evidence


async def test_silent_servers_time_out_inside_the_runs_own_timeout(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot, imap_password_file: Path,
    receiver: tuple[Receiver, int],
) -> None:  # fmt: skip
    # Servers that accept the connection and never say a word (SMTP greeting, IMAP greeting).
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, HOST, 0)
    silent_port = server.sockets[0].getsockname()[1]
    _, port = receiver
    try:
        for smtp_port, imap, subject in (
            (silent_port, {}, "smtp"),
            (port, {"port": silent_port, "security": "none"}, "imap"),
        ):
            config = make_config(dns_server, certs, dovecot, imap_password_file,
                                 smtp=plain_smtp(smtp_port), imap=imap, timeout="2s")  # fmt: skip
            rec = await run(config, dns_server)
            (finding,) = rec.result.findings
            assert (finding.code, finding.subject) == ("roundtrip_connect_failed", subject)
            assert "timed out" in finding.evidence.lower(), finding
            # The probe reported it itself; the runner's hard limit did not have to step in.
            assert not (rec.result.error or "").startswith("timed out after")
    finally:
        server.close()


async def test_a_failing_round_trip_does_not_delay_other_probes(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot,
    receiver: tuple[Receiver, int], imap_password_file: Path,
) -> None:  # fmt: skip
    handler, port = receiver
    handler.mode = "drop"
    config = make_config(dns_server, certs, dovecot, imap_password_file, smtp=plain_smtp(port),
                         timeout="3s")  # fmt: skip
    slow = asyncio.create_task(run(config, dns_server))
    await asyncio.sleep(0.2)  # the round trip is now waiting for its message
    dns_server.add_txt("example.test", "v=spf1 -all")
    dns_config = parse_config({"global": {"nameservers": [dns_server.address]},
                               "domains": [{"domain": "example.test"}]})  # fmt: skip
    (dns_target,) = PROBES["dns"].targets(dns_config)
    resolver = make_resolver([dns_server.address], attempt_timeout=1.0, lifetime=1.0)
    other = await run_probe(PROBES["dns"], dns_target, Runtime(resolver, dns_config))
    assert other.target.probe == "dns"
    assert not slow.done()  # the other probe finished while the round trip still waits
    rec = await slow
    assert codes(rec) == {"roundtrip_not_delivered"}


async def test_through_metrics_exposition(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot,
    receiver: tuple[Receiver, int], imap_password_file: Path,
) -> None:  # fmt: skip
    handler, port = receiver
    handler.auth_results = "mx.example.test; spf=softfail smtp.mailfrom=example.test"
    config = make_config(dns_server, certs, dovecot, imap_password_file, smtp=plain_smtp(port))
    rec = await run(config, dns_server, PROBES["roundtrip"])  # type: ignore[arg-type]
    text = exposition([rec])
    series = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    t = ("target", "primary")
    assert series[("deliverability_roundtrip_success", (t,))] == 1
    assert series[("deliverability_probe_success", (("probe", "roundtrip"), t))] == 1
    assert series[("deliverability_roundtrip_auth_result",
                   (("method", "spf"), ("result", "softfail"), t))] == 1  # fmt: skip
    assert series[("deliverability_finding", (("code", "roundtrip_auth_fail"),
                   ("probe", "roundtrip"), ("severity", "warning"), t))] == 1  # fmt: skip
    assert ("deliverability_roundtrip_duration_seconds", (t,)) in series


# ----- credentials refused (last: dovecot then delays logins from the same address) -----


async def test_wrong_smtp_password(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot, postfix: Postfix,
    imap_password_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    wrong = "smtp-WRONG-pa55word"
    (tmp_path / "smtp").write_text(wrong)
    smtp = {"port": postfix.smtp_port, "security": "starttls", "username": SENDER,
            "password_file": str(tmp_path / "smtp")}  # fmt: skip
    config = make_config(dns_server, certs, dovecot, imap_password_file, smtp=smtp)
    with caplog.at_level(logging.DEBUG):
        rec = await run(config, dns_server)
    (finding,) = rec.result.findings
    assert finding.code == "roundtrip_auth_failed", rec.result
    assert "535" in finding.evidence
    assert rec.result.error is not None
    assert wrong not in repr(rec.result) and wrong not in caplog.text


async def test_wrong_imap_password_sends_nothing(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot,
    receiver: tuple[Receiver, int], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    handler, port = receiver
    wrong = "imap-WRONG-pa55word"
    (tmp_path / "pw").write_text(wrong)
    config = make_config(dns_server, certs, dovecot, tmp_path / "pw", smtp=plain_smtp(port))
    with caplog.at_level(logging.DEBUG):
        rec = await run(config, dns_server)
    assert codes(rec) == {"roundtrip_imap_login_failed"}
    assert rec.result.error is not None and "AUTHENTICATE failed" in rec.result.error
    assert value(rec, "roundtrip_success") == 0
    assert handler.received == []  # nothing sent that nobody could clean up
    assert wrong not in repr(rec.result) and wrong not in caplog.text


# ----- config ---------------------------------------------------------------------------------


def test_config_validation() -> None:
    base = {"name": "p", "from": "a@example.test", "to": "b@example.test",
            "smtp": {"host": "smtp.example.test"},
            "imap": {"host": "imap.example.test", "username": "b",
                     "password_env": "X"}}  # fmt: skip
    config = parse_config({"roundtrip": [base]})
    rt = config.roundtrip[0]
    assert (rt.smtp.port, rt.smtp.security, rt.imap.port, rt.imap.security) == (
        587,
        "starttls",
        993,
        "tls",
    )
    bad = [
        ({"name": "a/b"}, "roundtrip[0].name"),
        ({"from": "not an address"}, "roundtrip[0].from"),
        ({"imap": {"host": "i.example.test", "username": "b"}}, "give password_env or"),
        ({"smtp": {"host": "s.example.test", "security": "ssl"}}, "roundtrip[0].smtp.security"),
        ({"smtp": {"host": "s.example.test", "password_env": "A", "password_file": "/x"}},
         "give only one"),
        ({"extra": 1}, "unknown key"),
        ({"smtp": {"host": "s.example.test", "username": "u"}}, "username needs password"),
        ({"imap": {"host": "i.example.test", "username": "b", "password_env": "X",
                   "mailbox": "Boîte"}}, "printable ASCII"),
    ]  # fmt: skip
    for change, message in bad:
        with pytest.raises(ConfigError) as err:
            parse_config({"roundtrip": [{**base, **change}]})
        assert message in str(err.value), (change, str(err.value))


def test_targets_one_per_entry() -> None:
    entry = {"from": "a@example.test", "to": "b@example.test", "smtp": {"host": "127.0.0.1"},
             "imap": {"host": "127.0.0.1", "username": "b", "password_env": "X"},
             "interval": "10m", "timeout": "2m"}  # fmt: skip
    config = parse_config({"roundtrip": [{"name": "a", **entry}, {"name": "ab", **entry}]})
    targets = RoundtripProbe().targets(config)
    assert [(t.name, t.interval, t.timeout) for t in targets] == [
        ("a", 600.0, 120.0), ("ab", 600.0, 120.0)
    ]  # fmt: skip
    assert all(isinstance(t, Target) and t.probe == "roundtrip" for t in targets)


class closed_port:
    """A loopback port with nothing listening (bound, never listened on)."""

    def __enter__(self) -> int:
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
