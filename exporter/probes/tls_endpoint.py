"""One endpoint of the ``tls`` probe: the SMTP conversation up to the TLS handshake, and what
it yields (samples, findings, details) — shared by plain targets (:mod:`exporter.probes.tls`),
every address of every MX host (:mod:`exporter.probes.tls_mx`) and DANE
(:mod:`exporter.probes.tls_dane`).

One conversation per endpoint (:func:`converse`): resolve the host through the configured
nameservers (A, then AAAA addresses; an IP literal needs no lookup) and connect to the first
address that accepts (or to the one address given), read the (possibly multi-line) greeting,
EHLO, STARTTLS if offered (or handshake at once for implicit TLS) with the host name (or
``server_name``) as SNI. The chain is fetched without verification and judged afterwards
(:mod:`exporter.net.certs`), so the certificate metrics are present even for an expired,
self-signed or misnamed certificate. With ``username`` and a password, AUTH is tried after
STARTTLS — but only when the certificate is valid: credentials are never sent to a server whose
identity could not be verified.

"Could not tell" (DNS failure, refused or timed-out connection, a temporary SMTP reply) is
:attr:`Outcome.failure` (an error, ``probe_success 0``) and never a finding. A TLS alert during
the handshake is a finding (``tls_handshake_failed``): the server answered, and senders will
fail the same way.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import ssl
from dataclasses import dataclass, field

from exporter.config import TlsTargetConfig
from exporter.dnssec import Validator
from exporter.findings import CRITICAL
from exporter.net.certs import (
    ChainVerdict,
    Presented,
    judge,
    load_presented,
    parse_ip,
    san_names,
    trust_store,
)
from exporter.net.dnsmodel import DnsTempError, NoAddress
from exporter.net.smtp import TLS_VERSION_NAMES, Session, SmtpConversation, SmtpProtocolError
from exporter.probes.base import ProbeContext
from exporter.results import Finding, ProbeResult, Sample, sample, state_set

WARNING_DAYS = 21.0
CRITICAL_DAYS = 7.0
OLD_VERSIONS = frozenset({"SSLv3", "TLSv1", "TLSv1.1"})
VERSION_VALUES = ("TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3")
MX_PORT = 25
_EXPLAINS_INVALID = frozenset(
    {
        "tls_cert_expired",
        "tls_cert_not_yet_valid",
        "tls_cert_untrusted",
        "tls_cert_hostname_mismatch",
    }
)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    label: str
    """The ``target`` label of its samples: ``host:port``."""
    name: str
    """The name the certificate must cover (``server_name`` or the host)."""
    starttls: bool
    prefix: str = ""
    """Prepended to errors and detail keys (the host, when several share one run)."""


class TlsResources:
    """What the ``tls`` probe keeps across the runs of one config: the DNSSEC validator (and its
    zone cache) that DANE needs; None with ``global.dnssec: false``."""

    def __init__(self, dnssec: Validator | None = None) -> None:
        self.dnssec = dnssec

    async def aclose(self) -> None:
        if self.dnssec is not None:
            await self.dnssec.aclose()


TlsContext = ProbeContext[TlsResources]


@dataclass
class Outcome:
    """What one conversation with one endpoint saw."""

    session: Session
    certs: list[Presented] = field(default_factory=list)
    verdict: ChainVerdict | None = None
    auth: tuple[bool | None, str] | None = None
    failure: str | None = None
    """Could not tell (DNS, connection, timeout): an error, never a finding."""
    tls_failure: str | None = None
    """The server answered with a broken TLS (a finding)."""
    details: dict[str, str] = field(default_factory=dict)
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    dane_valid: bool | None = None
    """Filled in by the DANE check: a usable TLSA record matched this chain."""

    @property
    def address(self) -> str:
        return self.session.address

    @property
    def valid(self) -> bool:
        """Handshake done with a certificate senders accept: matched by a usable TLSA record
        when the host publishes some (DANE senders then use nothing else), else valid for the
        Web PKI."""
        if not self.session.handshake_done:
            return False
        if self.dane_valid is not None:
            return self.dane_valid
        return self.verdict is not None and self.verdict.valid


# ----- one endpoint ---------------------------------------------------------------------------


def _default_ehlo_name() -> str:
    # gethostname() reads the kernel's name: no DNS lookup (getfqdn would use the system resolver).
    name = socket.gethostname().strip()
    return name if name and all(c.isalnum() or c in ".-" for c in name) else "localhost"


async def converse(
    ep: Endpoint,
    settings: TlsTargetConfig,
    ctx: TlsContext,
    deadline: float,
    address: str | None = None,
) -> Outcome:
    """Talk to one endpoint (only to ``address`` when given); never raises (but for
    cancellation)."""
    session = Session()
    out = Outcome(session)
    conversation = SmtpConversation(session, settings.ehlo_name or _default_ehlo_name())
    sni = None if parse_ip(ep.name) is not None else ep.name
    try:
        store = trust_store(settings.ca_file)
        password = settings.read_secret(f"tls {ep.label}") if settings.username else None
    except OSError as exc:
        out.failure = f"cannot read ca_file {settings.ca_file}: {exc.strerror or exc}"
        return out
    except ValueError as exc:  # the secret's message names the key, never the value
        out.failure = str(exc)
        return out
    try:
        async with asyncio.timeout_at(deadline):
            addresses = [address] if address else await ctx.dns.addresses(ep.host)
            await conversation.connect(addresses, ep.port, sni, implicit=not ep.starttls)
            await conversation.greeting()
            if ep.starttls:
                extensions = await conversation.ehlo()
                session.starttls_offered = "STARTTLS" in extensions
                if session.starttls_offered:
                    reply = await conversation.starttls(sni)
                    if 400 <= reply.code < 500:
                        out.failure = f"STARTTLS refused for now: {reply}"
                    elif reply.code != 220:
                        out.tls_failure = f"STARTTLS refused: {reply}"
            if session.handshake_done:
                out.certs = [load_presented(der) for der in session.chain_der]
                if not out.certs:
                    raise SmtpProtocolError("the server presented no certificate")
                out.verdict = judge(out.certs, ep.name, store, out.now)
                if password is not None and settings.username:
                    if out.verdict.valid:
                        out.auth = await conversation.auth(settings.username, password)
                    else:
                        out.details[_key(ep, "auth")] = (
                            "not tried: the certificate is not valid, and credentials are never"
                            " sent to a server whose identity could not be verified"
                        )
            elif password is not None:
                out.details[_key(ep, "auth")] = "not tried: no TLS"
    except TimeoutError:
        out.failure = f"timed out {session.stage}"
    except ssl.SSLError as exc:
        if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            out.failure = f"connection closed during {session.stage}"
        else:
            out.tls_failure = f"{session.stage}: {exc.reason or exc}"
    except SmtpProtocolError as exc:
        out.failure = str(exc)
    except DnsTempError as exc:
        out.failure = f"DNS lookup failed: {exc}"
    except NoAddress as exc:
        out.failure = str(exc)
    except ValueError as exc:  # a certificate cryptography cannot parse
        out.failure = f"cannot parse the server's certificate: {exc}"
    except OSError as exc:
        # A reset mid-handshake comes as a ConnectionResetError with no errno and no text.
        reason = os.strerror(exc.errno) if exc.errno else (str(exc) or type(exc).__name__)
        out.failure = f"{session.stage}: {reason}"
    finally:
        if out.failure or out.tls_failure:
            conversation.abort()
        else:
            conversation.close()
    if out.auth is not None and out.auth[0] is None:
        out.failure = out.auth[1]
    return out


def report(ep: Endpoint, out: Outcome, *, with_findings: bool = True) -> ProbeResult:
    """Samples, findings, details and error of one endpoint's conversation."""
    result = ProbeResult()
    session = out.session
    result.samples.extend(_samples(ep, session, out.certs, out.verdict, out.auth))
    if with_findings:
        result.findings.extend(finding_list(ep, out))
    result.details.update(out.details)
    if session.greeting is not None:
        result.details[_key(ep, "greeting")] = str(session.greeting)
    if out.tls_failure:
        result.details[_key(ep, "tls error")] = out.tls_failure
    if out.certs:
        leaf = out.certs[0].summary
        result.details[_key(ep, "certificate")] = (
            f"subject {leaf.subject}; issuer {leaf.issuer}; serial {leaf.serial};"
            f" not after {_iso(leaf.not_after)}; sha256 {leaf.fingerprint_sha256}"
        )
        if not session.full_chain:
            result.details[_key(ep, "chain")] = "leaf only (this Python cannot read the chain)"
    if out.verdict is not None and not out.verdict.valid:
        result.details[_key(ep, "verification")] = (
            out.verdict.valid_error or out.verdict.trust_error
        )
    if out.failure:
        result.error = f"{ep.prefix}: {out.failure}" if ep.prefix else out.failure
    return result


def finding_list(ep: Endpoint, out: Outcome) -> list[Finding]:
    return _findings(ep, out.session, out.certs, out.verdict, out.auth, out.tls_failure, out.now)


def _key(ep: Endpoint, what: str) -> str:
    return f"{ep.prefix} {what}" if ep.prefix else what


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _samples(
    ep: Endpoint,
    session: Session,
    certs: list[Presented],
    verdict: ChainVerdict | None,
    auth: tuple[bool | None, str] | None,
) -> list[Sample]:
    t = ep.label
    out = [sample("tls_handshake_success", session.handshake_done, target=t)]
    if session.starttls_offered is not None:
        out.append(sample("smtp_starttls_offered", session.starttls_offered, target=t))
    if session.handshake_done and session.tls_version:
        version = TLS_VERSION_NAMES.get(session.tls_version, session.tls_version)
        values = VERSION_VALUES if version in VERSION_VALUES else (*VERSION_VALUES, version)
        out += state_set("tls_version_info", version, values, "version", target=t)
    if session.handshake_done and session.cipher:
        out.append(sample("tls_cipher_info", 1, target=t, cipher=session.cipher))
    if certs:
        leaf = certs[0].summary
        out += [
            sample("tls_cert_not_after_timestamp_seconds", leaf.not_after, target=t),
            sample("tls_cert_not_before_timestamp_seconds", leaf.not_before, target=t),
            sample(
                "tls_chain_not_after_timestamp_seconds",
                min(c.summary.not_after for c in certs),
                target=t,
            ),
            sample(
                "tls_cert_info",
                1,
                target=t,
                subject=leaf.subject,
                issuer=leaf.issuer,
                serial=leaf.serial,
                fingerprint_sha256=leaf.fingerprint_sha256,
            ),
        ]
    if verdict is not None:
        out += [
            sample("tls_cert_valid", verdict.valid, target=t),
            sample("tls_cert_hostname_match", verdict.name_ok, target=t),
            sample("tls_cert_chain_trusted", verdict.trusted, target=t),
        ]
    if auth is not None and auth[0] is not None:
        out.append(sample("smtp_auth_success", auth[0], target=t))
    return out


def _findings(
    ep: Endpoint,
    session: Session,
    certs: list[Presented],
    verdict: ChainVerdict | None,
    auth: tuple[bool | None, str] | None,
    tls_failure: str | None,
    now: dt.datetime,
) -> list[Finding]:
    subject = ep.label
    out: list[Finding] = []

    def add(code: str, evidence: str, severity: str | None = None) -> None:
        out.append(Finding(code, evidence=evidence, subject=subject, severity=severity))

    if ep.starttls and session.starttls_offered is False:
        add("tls_starttls_not_offered", f"EHLO reply of {ep.label} lists no STARTTLS")
    if tls_failure:
        add("tls_handshake_failed", tls_failure)
    if session.tls_version in OLD_VERSIONS:
        add("tls_version_old", f"negotiated {TLS_VERSION_NAMES[session.tls_version]}")
    if certs and verdict is not None:
        out += [
            Finding(f.code, f.evidence, subject, f.severity)
            for f in certificate_findings(certs, verdict, ep.name, now)
        ]
    if auth is not None and auth[0] is False:
        add("smtp_auth_failed", auth[1])
    return out


def certificate_findings(
    certs: list[Presented], verdict: ChainVerdict, name: str, now: dt.datetime
) -> list[Finding]:
    """Expiry, trust and name findings for a presented chain (leaf first) and its verdict."""
    out: list[Finding] = []
    now_ts = now.timestamp()
    leaf = certs[0].cert
    leaf_sum = certs[0].summary
    if leaf_sum.not_before > now_ts:
        out.append(
            Finding(
                "tls_cert_not_yet_valid",
                f"{leaf_sum.subject} is valid from {_iso(leaf_sum.not_before)}",
            )
        )
    if leaf_sum.not_after < now_ts:
        days = (now_ts - leaf_sum.not_after) / 86400
        out.append(
            Finding(
                "tls_cert_expired",
                f"{leaf_sum.subject} expired {_iso(leaf_sum.not_after)} ({days:.1f} days ago)",
            )
        )
    elif not verdict.valid:
        # An expired extra certificate the verifier could route around is no problem; one that
        # breaks verification is.
        for cert in certs[1:]:
            s = cert.summary
            if s.not_after < now_ts:
                out.append(
                    Finding(
                        "tls_cert_expired",
                        f"intermediate {s.subject} expired {_iso(s.not_after)}",
                    )
                )
                break
    if verdict.valid and verdict.verified_not_after is not None:
        earliest: float | None = verdict.verified_not_after
    else:
        future = [c.summary.not_after for c in certs]
        future = [t for t in future if t >= now_ts]
        earliest = min(future) if future else None
    if earliest is not None and earliest >= now_ts:
        days = (earliest - now_ts) / 86400
        if days < WARNING_DAYS:
            out.append(
                Finding(
                    "tls_cert_expiring",
                    f"the chain's earliest expiry is {_iso(earliest)} (in {days:.1f} days)",
                    severity=CRITICAL if days < CRITICAL_DAYS else None,
                )
            )
    if not verdict.trusted:
        out.append(Finding("tls_cert_untrusted", verdict.trust_error or "chain not trusted"))
    if not verdict.name_ok:
        dns_names, ips = san_names(leaf)
        names = ", ".join(dns_names + ips) or "none (no subjectAltName)"
        out.append(
            Finding(
                "tls_cert_hostname_mismatch",
                f"certificate names {names}; checked {name}",
            )
        )
    if not verdict.valid and not any(f.code in _EXPLAINS_INVALID for f in out):
        out.append(Finding("tls_cert_untrusted", verdict.valid_error or "verification failed"))
    return out
