"""The tls probe against real SMTP servers on loopback (aiosmtpd + trustme), a real DNS server,
and raw asyncio servers for the misbehaving cases (silent, stalling mid-handshake)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import logging
import socket
import ssl
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from conftest import exposed_value, make_ctx
from conftest import sample_value as value
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from dnsserver import DnsServer
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.collector import exposition
from exporter.config import ConfigError, parse_config
from exporter.net.certs import dns_name_matches
from exporter.net.dnsclient import make_resolver
from exporter.net.smtp import Reply, SmtpProtocolError, parse_ehlo, parse_reply_line
from exporter.probes import PROBES
from exporter.probes.tls import PROBE
from exporter.results import Finding, ProbeResult, Target
from exporter.runner import Runtime, run_probe

HOST = "mail.example.test"
NOW = dt.datetime.now(dt.UTC)
SECRET = "s3cr3t-Pa55word"


# ----- servers --------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Handler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


class BannerSMTP(SMTP):  # type: ignore[misc]
    """aiosmtpd with a multi-line greeting (``220-`` lines before the final ``220``)."""

    banner_lines: tuple[str, ...] = ()

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and status.startswith("220 ") and not getattr(self, "_b", 0):
            self._b = 1
            for line in self.banner_lines:
                await super().push(f"220-{line}")
        await super().push(status)


class SmtpController(Controller):  # type: ignore[misc]
    banner_lines: tuple[str, ...] = ()

    def factory(self) -> SMTP:
        if not self.banner_lines:
            return super().factory()
        smtp = BannerSMTP(self.handler, **self.SMTP_kwargs)
        smtp.banner_lines = self.banner_lines
        return smtp


def server_context(
    cert: trustme.LeafCert, max_version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    if max_version is not None:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        with warnings.catch_warnings():  # old versions are deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = max_version
    return ctx


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == b"probe"
        and data.password == SECRET.encode()
    )
    # handled=False: aiosmtpd then sends its own 535 (handled=True would leave us hanging)
    return AuthResult(success=ok, handled=False)


@contextlib.contextmanager
def smtp_server(
    cert: trustme.LeafCert | None,
    *,
    implicit: bool = False,
    banner: tuple[str, ...] = (),
    auth: bool = False,
    max_version: ssl.TLSVersion | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
) -> Iterator[int]:
    """A real aiosmtpd server; STARTTLS (or implicit TLS) with ``cert``, none when None."""
    port = port or free_port(host)
    kwargs: dict[str, Any] = {}
    if cert is not None:
        ctx = server_context(cert, max_version)
        kwargs["ssl_context" if implicit else "tls_context"] = ctx
    if auth:
        kwargs.update(authenticator=authenticator, auth_require_tls=True)
    controller = SmtpController(
        Handler(), hostname=host, port=port, server_hostname=HOST, ready_timeout=5, **kwargs
    )
    controller.banner_lines = banner
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@contextlib.asynccontextmanager
async def raw_server(script: str) -> AsyncIterator[int]:
    """A misbehaving server: 'silent' never speaks; 'stall' offers STARTTLS, says 220 to it,
    then never answers the TLS ClientHello; 'garbage' answers the ClientHello with plain text
    (a broken TLS setup, or a proxy in the way)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if script in ("stall", "garbage"):
                writer.write(b"220 stall.example.test ESMTP\r\n")
                await reader.readline()  # EHLO
                writer.write(b"250-stall.example.test\r\n250 STARTTLS\r\n")
                await reader.readline()  # STARTTLS
                writer.write(b"220 go ahead\r\n")
                if script == "garbage":
                    await reader.read(1)  # the ClientHello has arrived
                    writer.write(b"421 this is not TLS at all, sorry about that\r\n" * 4)
            await asyncio.sleep(30)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


# ----- helpers --------------------------------------------------------------------------------


@pytest.fixture
def dns(dns_server: DnsServer) -> DnsServer:
    dns_server.add(HOST, "A", "127.0.0.1")
    return dns_server


def target_of(dns: DnsServer, entry: dict[str, Any], timeout: float = 5.0) -> tuple[Target, Any]:
    config = parse_config(
        {"global": {"nameservers": [dns.address], "timeout": timeout}, "tls": [entry]}
    )
    (target,) = PROBE.targets(config)
    return target, config


async def probe(dns: DnsServer, entry: dict[str, Any], probe_timeout: float = 5.0) -> ProbeResult:
    target, config = target_of(dns, entry, probe_timeout)
    return await PROBE.run(target, make_ctx(dns, config=config, timeout=probe_timeout))


def codes(result: ProbeResult) -> dict[str, Finding]:
    return {f.code: f for f in result.findings}


def leaf_der(cert: trustme.LeafCert) -> bytes:
    pem = cert.cert_chain_pems[0].bytes()
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


# ----- the cases of the brief -----------------------------------------------------------------


async def test_valid_starttls(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    not_after = (NOW + dt.timedelta(days=200)).replace(microsecond=0)
    cert = ca.issue_cert(HOST, not_after=not_after)
    with smtp_server(cert) as port:
        result = await probe(dns, {"target": f"{HOST}:{port}", "ca_file": ca_file})
    t = f"{HOST}:{port}"
    assert result.error is None
    assert result.findings == []
    assert value(result, "smtp_starttls_offered", target=t) == 1
    assert value(result, "tls_handshake_success", target=t) == 1
    assert value(result, "tls_cert_valid", target=t) == 1
    assert value(result, "tls_cert_not_after_timestamp_seconds", target=t) == not_after.timestamp()
    assert value(result, "tls_version_info", target=t, version="TLS 1.3") == 1
    assert value(result, "tls_version_info", target=t, version="TLS 1.2") == 0
    fingerprint = hashlib.sha256(leaf_der(cert)).hexdigest()
    assert value(result, "tls_cert_info", target=t, fingerprint_sha256=fingerprint) == 1
    # The name was resolved through the configured nameserver.
    assert (HOST, "A") in dns.queries


async def test_chain_with_intermediate_is_fetched_whole(dns: DnsServer, tmp_path: Path) -> None:
    root = trustme.CA()
    intermediate = root.create_child_ca()
    cert = intermediate.issue_cert(HOST, not_after=NOW + dt.timedelta(days=800))
    # Only the root is trusted: verification needs the intermediate the server presents.
    root.cert_pem.write_to_path(str(tmp_path / "root.pem"))
    with smtp_server(cert) as port:
        result = await probe(
            dns, {"target": f"{HOST}:{port}", "ca_file": str(tmp_path / "root.pem")}
        )
    t = f"{HOST}:{port}"
    assert result.error is None and result.findings == []
    assert value(result, "tls_cert_valid", target=t) == 1
    leaf_expiry = value(result, "tls_cert_not_after_timestamp_seconds", target=t)
    chain_expiry = value(result, "tls_chain_not_after_timestamp_seconds", target=t)
    assert leaf_expiry is not None and chain_expiry is not None
    # trustme's intermediate expires before the leaf would: the chain's earliest expiry is its.
    intermediate_cert = x509.load_pem_x509_certificate(intermediate.cert_pem.bytes())
    assert chain_expiry == min(leaf_expiry, intermediate_cert.not_valid_after_utc.timestamp())


@pytest.mark.parametrize(("days", "severity"), [(15, None), (3, "critical")])
async def test_expiring(
    ca: trustme.CA, ca_file: str, dns: DnsServer, days: int, severity: str | None
) -> None:
    cert = ca.issue_cert(HOST, not_after=NOW + dt.timedelta(days=days))
    with smtp_server(cert) as port:
        result = await probe(dns, {"target": f"{HOST}:{port}", "ca_file": ca_file})
    found = codes(result)
    assert set(found) == {"tls_cert_expiring"}
    assert found["tls_cert_expiring"].severity == severity
    assert value(result, "tls_cert_valid", target=f"{HOST}:{port}") == 1


async def test_not_expiring_for_a_month(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    cert = ca.issue_cert(HOST, not_after=NOW + dt.timedelta(days=30))
    with smtp_server(cert) as port:
        result = await probe(dns, {"target": f"{HOST}:{port}", "ca_file": ca_file})
    assert result.findings == []


async def test_expired(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    not_after = (NOW - dt.timedelta(days=2)).replace(microsecond=0)
    cert = ca.issue_cert(HOST, not_before=NOW - dt.timedelta(days=90), not_after=not_after)
    with smtp_server(cert) as port:
        result = await probe(dns, {"target": f"{HOST}:{port}", "ca_file": ca_file})
    t = f"{HOST}:{port}"
    assert result.error is None
    # Expired, but from a trusted CA and for the right name: one finding, not three.
    assert set(codes(result)) == {"tls_cert_expired"}
    assert value(result, "tls_cert_valid", target=t) == 0
    assert value(result, "tls_cert_chain_trusted", target=t) == 1
    assert value(result, "tls_cert_not_after_timestamp_seconds", target=t) == not_after.timestamp()


async def test_not_yet_valid(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    cert = ca.issue_cert(HOST, not_before=NOW + dt.timedelta(days=2))
    with smtp_server(cert) as port:
        result = await probe(dns, {"target": f"{HOST}:{port}", "ca_file": ca_file})
    assert set(codes(result)) == {"tls_cert_not_yet_valid"}


async def test_wrong_name(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    cert = ca.issue_cert("other.example.test")
    with smtp_server(cert) as port:
        result = await probe(dns, {"target": f"{HOST}:{port}", "ca_file": ca_file})
    t = f"{HOST}:{port}"
    found = codes(result)
    assert set(found) == {"tls_cert_hostname_mismatch"}
    assert "other.example.test" in found["tls_cert_hostname_mismatch"].evidence
    assert value(result, "tls_cert_hostname_match", target=t) == 0
    assert value(result, "tls_cert_chain_trusted", target=t) == 1
    assert value(result, "tls_cert_valid", target=t) == 0


async def test_server_name_overrides_the_checked_name(
    ca: trustme.CA, ca_file: str, dns: DnsServer
) -> None:
    cert = ca.issue_cert("smtp.example.test")
    with smtp_server(cert) as port:
        entry = {"target": f"{HOST}:{port}", "ca_file": ca_file, "server_name": "smtp.example.test"}
        result = await probe(dns, entry)
    assert result.findings == []
    assert value(result, "tls_cert_valid", target=f"{HOST}:{port}") == 1


async def test_wildcard_certificate(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    cert = ca.issue_cert("*.example.test")
    with smtp_server(cert) as port:
        result = await probe(dns, {"target": f"{HOST}:{port}", "ca_file": ca_file})
    assert result.findings == []


async def test_untrusted(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    cert = trustme.CA().issue_cert(HOST)  # another CA, not in ca_file nor the system roots
    with smtp_server(cert) as port:
        result = await probe(dns, {"target": f"{HOST}:{port}", "ca_file": ca_file})
    t = f"{HOST}:{port}"
    found = codes(result)
    assert set(found) == {"tls_cert_untrusted"}
    assert "issuer" in found["tls_cert_untrusted"].evidence
    assert value(result, "tls_cert_valid", target=t) == 0
    assert value(result, "tls_cert_hostname_match", target=t) == 1
    # The metrics are there although nothing verified.
    assert value(result, "tls_cert_not_after_timestamp_seconds", target=t) is not None


async def test_untrusted_without_ca_file(ca: trustme.CA, dns: DnsServer) -> None:
    cert = ca.issue_cert(HOST)
    with smtp_server(cert) as port:
        result = await probe(dns, {"target": f"{HOST}:{port}"})
    assert set(codes(result)) == {"tls_cert_untrusted"}


async def test_implicit_tls(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    cert = ca.issue_cert(HOST)
    with smtp_server(cert, implicit=True) as port:
        result = await probe(
            dns, {"target": f"{HOST}:{port}", "ca_file": ca_file, "starttls": False}
        )
    t = f"{HOST}:{port}"
    assert result.error is None and result.findings == []
    assert value(result, "tls_cert_valid", target=t) == 1
    assert value(result, "smtp_starttls_offered", target=t) is None
    assert result.details["greeting"].startswith("220 ")


async def test_port_465_defaults_to_implicit_tls() -> None:
    config = parse_config(
        {"tls": [{"target": "smtp.example.test:465"}, {"target": "smtp.example.test:587"}]}
    )
    assert [t.settings.use_starttls for t in PROBE.targets(config)] == [False, True]


async def test_starttls_against_an_implicit_tls_port_is_not_a_finding(
    ca: trustme.CA, dns: DnsServer
) -> None:
    cert = ca.issue_cert(HOST)
    with smtp_server(cert, implicit=True) as port:
        result = await probe(dns, {"target": f"{HOST}:{port}"}, probe_timeout=1.0)
    # We spoke SMTP to a TLS port: a misconfiguration of the probe, reported as "could not tell".
    assert result.error is not None
    assert not any(
        f.severity == "critical" or f.code.startswith("tls_cert") for f in result.findings
    )


async def test_no_starttls(dns: DnsServer) -> None:
    with smtp_server(None) as port:
        result = await probe(dns, {"target": f"{HOST}:{port}"})
    t = f"{HOST}:{port}"
    assert result.error is None  # we could tell: the server offers no STARTTLS
    assert set(codes(result)) == {"tls_starttls_not_offered"}
    assert value(result, "smtp_starttls_offered", target=t) == 0
    assert value(result, "tls_handshake_success", target=t) == 0
    assert value(result, "tls_cert_valid", target=t) is None


async def test_old_tls_version(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    cert = ca.issue_cert(HOST)
    with smtp_server(cert, max_version=ssl.TLSVersion.TLSv1_1) as port:
        result = await probe(dns, {"target": f"{HOST}:{port}", "ca_file": ca_file})
    t = f"{HOST}:{port}"
    assert value(result, "tls_version_info", target=t, version="TLS 1.1") == 1
    assert set(codes(result)) == {"tls_version_old"}


async def test_multi_line_banner(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    cert = ca.issue_cert(HOST)
    banner = ("mail.example.test ESMTP", "No UCE", "Be nice")
    with smtp_server(cert, banner=banner) as port:
        result = await probe(dns, {"target": f"{HOST}:{port}", "ca_file": ca_file})
    assert result.error is None and result.findings == []
    assert value(result, "tls_cert_valid", target=f"{HOST}:{port}") == 1
    assert result.details["greeting"].startswith(
        "220 mail.example.test ESMTP / No UCE / Be nice / "
    )


async def run_with_runner(dns: DnsServer, entry: dict[str, Any], target_timeout: float) -> Any:
    target, config = target_of(dns, entry, target_timeout)
    deps = Runtime(make_resolver([dns.address], attempt_timeout=1, lifetime=1), config)
    return await run_probe(PROBES["tls"], target, deps)


async def test_silent_server_costs_only_the_timeout(dns: DnsServer) -> None:
    async with raw_server("silent") as port:
        record = await run_with_runner(dns, {"target": f"{HOST}:{port}"}, target_timeout=1.0)
    result = record.result
    # The probe's own deadline fired (naming the step), not the runner's blunt timeout.
    assert result.error == "timed out waiting for the greeting"
    assert value(result, "tls_handshake_success", target=f"{HOST}:{port}") == 0
    assert result.findings == []


async def test_silent_implicit_tls_server(dns: DnsServer) -> None:
    async with raw_server("silent") as port:
        record = await run_with_runner(dns, {"target": f"{HOST}:{port}", "starttls": False}, 1.0)
    assert record.result.error is not None
    assert record.result.error.startswith("timed out TLS handshake with 127.0.0.1:")
    assert record.result.findings == []


async def test_stall_mid_starttls_handshake(dns: DnsServer) -> None:
    async with raw_server("stall") as port:
        record = await run_with_runner(dns, {"target": f"{HOST}:{port}"}, target_timeout=1.0)
    result = record.result
    assert result.error == "timed out TLS handshake after STARTTLS"
    assert value(result, "smtp_starttls_offered", target=f"{HOST}:{port}") == 1
    assert value(result, "tls_handshake_success", target=f"{HOST}:{port}") == 0
    assert result.findings == []


async def test_tls_failure_is_a_finding(dns: DnsServer) -> None:
    async with raw_server("garbage") as port:
        result = await probe(dns, {"target": f"{HOST}:{port}"})
    t = f"{HOST}:{port}"
    assert result.error is None  # the server answered: we could tell
    found = codes(result)
    assert set(found) == {"tls_handshake_failed"}
    assert found["tls_handshake_failed"].evidence.startswith("TLS handshake after STARTTLS: ")
    assert value(result, "tls_handshake_success", target=t) == 0


async def test_connection_refused_is_could_not_tell(dns: DnsServer) -> None:
    port = free_port()
    result = await probe(dns, {"target": f"{HOST}:{port}"})
    assert result.error is not None and "refused" in result.error.lower()
    assert result.findings == []


async def test_dns_failure_is_could_not_tell(dns: DnsServer) -> None:
    dns.servfail.add("broken.example.test")
    result = await probe(dns, {"target": "broken.example.test:25"})
    assert result.error is not None and result.error.startswith("DNS lookup failed")
    assert result.findings == []


async def test_ip_literal_needs_no_lookup(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    cert = ca.issue_cert("127.0.0.1")
    with smtp_server(cert) as port:
        result = await probe(dns, {"target": f"127.0.0.1:{port}", "ca_file": ca_file})
    assert result.error is None and result.findings == []
    assert value(result, "tls_cert_valid", target=f"127.0.0.1:{port}") == 1
    assert dns.queries == []


# ----- SMTP AUTH ------------------------------------------------------------------------------


def all_text(result: ProbeResult) -> str:
    parts = [result.error or "", *result.details.values(), *result.details.keys()]
    parts += [f.evidence for f in result.findings]
    parts += [v for s in result.samples for _, v in s.labels]
    return "\n".join(parts)


@pytest.mark.parametrize(("password", "expected"), [(SECRET, 1), ("wrong-password", 0)])
async def test_smtp_auth(
    ca: trustme.CA, ca_file: str, dns: DnsServer, tmp_path: Path, password: str, expected: int
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(password + "\n")
    cert = ca.issue_cert(HOST)
    with smtp_server(cert, auth=True) as port:
        entry = {
            "target": f"{HOST}:{port}",
            "ca_file": ca_file,
            "username": "probe",
            "password_file": str(secret_file),
        }
        result = await probe(dns, entry)
    assert result.error is None
    assert value(result, "smtp_auth_success", target=f"{HOST}:{port}") == expected
    assert ("smtp_auth_failed" in codes(result)) == (expected == 0)
    text = all_text(result)
    for secret in (password, base64.b64encode(password.encode()).decode()):
        assert secret not in text


async def test_smtp_auth_not_tried_over_an_unverified_certificate(
    ca: trustme.CA, dns: DnsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLS_PROBE_PASSWORD", SECRET)
    cert = ca.issue_cert(HOST)
    with smtp_server(cert, auth=True) as port:
        entry = {
            "target": f"{HOST}:{port}",
            "username": "probe",
            "password_env": "TLS_PROBE_PASSWORD",
        }
        result = await probe(dns, entry)  # no ca_file: the certificate is untrusted
    assert value(result, "smtp_auth_success", target=f"{HOST}:{port}") is None
    assert "not tried" in result.details["auth"]
    assert SECRET not in all_text(result)


async def test_missing_secret_is_an_error_without_the_value(dns: DnsServer) -> None:
    entry = {"target": f"{HOST}:25", "username": "probe", "password_env": "TLS_PROBE_UNSET_VAR"}
    result = await probe(dns, entry)
    assert result.error is not None and "TLS_PROBE_UNSET_VAR is not set" in result.error


# ----- mx_of ----------------------------------------------------------------------------------


def loopback_25() -> tuple[str, str]:
    """Two distinct loopback addresses whose port 25 is free (MX hosts are probed on port 25)."""
    found: list[str] = []
    for last in range(10, 250):
        address = f"127.0.25.{last}"
        try:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((address, 25))
        except PermissionError:
            pytest.skip("binding port 25 needs root (or CAP_NET_BIND_SERVICE)")
        except OSError:
            continue
        found.append(address)
        if len(found) == 2:
            return found[0], found[1]
    pytest.skip("no free loopback address for port 25")


async def test_mx_of_follows_dns(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    a1, a2 = loopback_25()
    dns.add("example.test", "MX", "10 mx1.example.test.")
    dns.add("example.test", "MX", "20 mx2.example.test.")
    dns.add("mx1.example.test", "A", a1)
    dns.add("mx2.example.test", "A", a2)
    good = ca.issue_cert("mx1.example.test")
    misnamed = ca.issue_cert("elsewhere.example.test")
    entry = {"mx_of": "example.test", "ca_file": ca_file}
    with smtp_server(good, host=a1, port=25), smtp_server(misnamed, host=a2, port=25):
        target, _ = target_of(dns, entry)
        assert target.name == "mx:example.test"
        result = await probe(dns, entry)
        assert result.error is None
        assert value(result, "tls_cert_valid", target="mx1.example.test:25") == 1
        assert value(result, "tls_cert_valid", target="mx2.example.test:25") == 0
        assert [(f.code, f.subject) for f in result.findings] == [
            ("tls_cert_hostname_mismatch", "mx2.example.test:25")
        ]
        # The MX set changes: the next run probes what DNS says now.
        dns.set_records("example.test", [("MX", "10 mx1.example.test.")])
        result = await probe(dns, entry)
    targets = {dict(s.labels)["target"] for s in result.samples}
    assert targets == {"mx1.example.test:25"}
    assert result.findings == []


async def test_mx_of_one_host_down(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    a1, a2 = loopback_25()
    dns.add("example.test", "MX", "10 mx1.example.test.")
    dns.add("example.test", "MX", "20 mx2.example.test.")
    dns.add("mx1.example.test", "A", a1)
    dns.add("mx2.example.test", "A", a2)  # nothing listens there
    with smtp_server(ca.issue_cert("mx1.example.test"), host=a1, port=25):
        result = await probe(dns, {"mx_of": "example.test", "ca_file": ca_file})
    # The error names the host and the address that could not be reached.
    assert result.error is not None
    assert result.error.startswith(f"mx2.example.test:25 [{a2}]: connecting to {a2}:25")
    assert value(result, "tls_cert_valid", target="mx1.example.test:25") == 1
    assert value(result, "tls_handshake_success", target="mx2.example.test:25") == 0
    assert value(result, "tls_address_success", target="mx1.example.test:25", address=a1) == 1
    assert value(result, "tls_address_success", target="mx2.example.test:25", address=a2) == 0
    assert result.findings == []


async def test_mx_of_fan_out_is_bounded(dns: DnsServer) -> None:
    """1,500 MX records (seen in the wild): the first 16 hosts by preference are probed, at
    most 8 at once, with a finding naming what was left out; a host's addresses are capped too."""
    for i in range(1500):
        dns.add("many.example.test", "MX", f"{i} mx{i}.many.example.test.")
        dns.add(f"mx{i}.many.example.test", "A", "127.0.0.1")  # nothing listens on port 25 here
    for i in range(12):
        dns.add("mx0.many.example.test", "A", f"127.0.26.{i + 1}")
    result = await probe(dns, {"mx_of": "many.example.test"}, probe_timeout=20)
    hosts = {dict(s.labels)["target"] for s in result.samples}
    assert hosts == {f"mx{i}.many.example.test:25" for i in range(16)}
    addresses = [s for s in result.samples if s.metric == "tls_address_success"]
    assert len(addresses) == 15 + 8  # one address each, eight of mx0's thirteen
    found = {f.subject: f.evidence for f in result.findings if f.code == "tls_mx_too_many"}
    assert found["many.example.test"].startswith(
        "many.example.test publishes 1500 MX hosts; probed the first 16 by preference, not"
        " mx16.many.example.test, mx17.many.example.test"
    )
    assert found["mx0.many.example.test:25"].startswith("mx0.many.example.test has 13 addresses")


async def test_mx_of_without_mx(dns: DnsServer) -> None:
    dns.add("nomx.example.test", "A", "127.0.0.1")
    result = await probe(dns, {"mx_of": "nomx.example.test"})
    assert result.error is None and result.samples == []
    assert "no MX" in result.details["mx hosts"]


async def test_mx_of_dns_timeout(dns: DnsServer) -> None:
    dns.timeout.add("slow.example.test")
    result = await probe(dns, {"mx_of": "slow.example.test"})
    assert result.error is not None and "MX" in result.error
    assert result.findings == []


# ----- through /metrics -----------------------------------------------------------------------


async def test_exposition(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    cert = ca.issue_cert(HOST, not_after=NOW + dt.timedelta(days=3))
    with smtp_server(cert) as port:
        record = await run_with_runner(dns, {"target": f"{HOST}:{port}", "ca_file": ca_file}, 5.0)
    text = exposition([record])
    t = f"{HOST}:{port}"

    def get(name: str, **labels: str) -> float:
        return exposed_value(text, name, **labels)

    assert get("deliverability_probe_success", probe="tls", target=t) == 1
    assert get("deliverability_tls_cert_valid", target=t) == 1
    assert get("deliverability_finding", code="tls_cert_expiring", severity="critical") == 1
    assert get("deliverability_tls_cert_not_after_timestamp_seconds", target=t) > NOW.timestamp()


# ----- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"mx_of": "example.test", "server_name": "x.example.test"},
            "server_name cannot be used with mx_of",
        ),
        ({"mx_of": "example.test", "starttls": False}, "starttls cannot be false"),
        ({"target": "a.example.test:587", "username": "u"}, "needs both username and password"),
        ({"target": "a.example.test:587", "password_env": "X"}, "needs both username and password"),
        ({"target": "a.example.test"}, "expected host:port"),
        (
            {"target": "a.example.test:25", "mx_of": "example.test"},
            "exactly one of target and mx_of",
        ),
    ],
)
def test_config_errors(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"tls": [entry]})
    assert any(message in p and p.startswith("tls[0]") for p in info.value.problems), (
        info.value.problems
    )


# ----- parsers (property tests) ---------------------------------------------------------------

_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@given(st.integers(200, 599), _text, st.booleans())
def test_reply_line_round_trip(code: int, text: str, last: bool) -> None:
    line = f"{code}{' ' if last else '-'}{text}\r\n".encode()
    assert parse_reply_line(line) == (code, last, text.strip())


@given(st.binary(max_size=60))
def test_reply_line_never_crashes(raw: bytes) -> None:
    try:
        code, _, _ = parse_reply_line(raw)
    except SmtpProtocolError:
        return
    assert 0 <= code <= 999


def test_ehlo_keywords() -> None:
    reply = Reply(
        250, ("mx.example.test Hello", "PIPELINING", "SIZE 1000", "starttls", "AUTH PLAIN LOGIN")
    )
    assert parse_ehlo(reply) == {
        "PIPELINING": "",
        "SIZE": "1000",
        "STARTTLS": "",
        "AUTH": "PLAIN LOGIN",
    }


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_names = st.lists(_label, min_size=2, max_size=5).map(".".join)


@settings(max_examples=40)
@given(_names)
def test_name_matches_itself_in_any_case(name: str) -> None:
    assert dns_name_matches(name, name.upper() + ".")


@settings(max_examples=40)
@given(_label, _names)
def test_wildcard_covers_exactly_one_label(first: str, rest: str) -> None:
    assert dns_name_matches(f"*.{rest}", f"{first}.{rest}")
    assert not dns_name_matches(f"*.{rest}", rest)
    assert not dns_name_matches(f"*.{rest}", f"a.{first}.{rest}")


@settings(max_examples=40)
@given(_label)
def test_wildcard_over_a_single_label_is_refused(tld: str) -> None:
    assert not dns_name_matches(f"*.{tld}", f"host.{tld}")


@settings(max_examples=40)
@given(_names, _names)
def test_different_names_do_not_match(a: str, b: str) -> None:
    assert dns_name_matches(a, b) == (a == b)


logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-connection chatter
