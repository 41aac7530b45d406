"""The ``tls`` probe: the certificate and TLS of a mail server, as a sending MTA meets them.

Targets (one :class:`~exporter.probes.base.Target` per ``tls`` config entry):

* ``target: host:port`` — Target name and every sample's ``target`` label are ``host:port``.
  STARTTLS unless ``starttls: false`` or the port is 465 (implicit TLS).
* ``mx_of: DOMAIN`` — Target name ``mx:DOMAIN`` (that is the ``target`` of ``probe_success`` and
  of the findings). Each run looks up the domain's MX records, so the probed hosts follow DNS
  changes, and probes every MX host on port 25 with STARTTLS concurrently; per-host samples carry
  ``target="<mx host>:25"`` and findings name the host in their ``subject``. A domain without MX
  records (or with a null MX) has nothing to probe: the run succeeds with no per-host samples
  (the ``dns`` probe reports the missing MX).

One run per endpoint: resolve the host through the configured nameservers (A, then AAAA
addresses; an IP literal needs no lookup), connect to the first address that accepts, read the
(possibly multi-line) greeting, EHLO, STARTTLS if offered (or handshake at once for implicit TLS)
with the host name (or ``server_name``) as SNI. The chain is fetched without verification and
judged afterwards (:mod:`exporter.net.certs`), so the certificate metrics are present even
for an expired, self-signed or misnamed certificate. With ``username`` and a password, AUTH is
tried after STARTTLS — but only when the certificate is valid: credentials are never sent to a
server whose identity could not be verified.

Everything runs under one deadline a little shorter than the target's timeout, so a server that
accepts and never speaks, or stalls mid-handshake, ends the run with an error naming the stalled
step (and whatever was seen before it) rather than the runner's bare timeout.

"Could not tell" (DNS failure, refused or timed-out connection, a temporary SMTP reply) is an
error (``probe_success 0``) and never a finding. A TLS alert during the handshake is a finding
(``tls_handshake_failed``): the server answered, and senders will fail the same way.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import ssl
from dataclasses import dataclass

from exporter.config import Config, TlsTargetConfig
from exporter.findings import CRITICAL
from exporter.net.addr import split_host_port
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
from exporter.net.network import Network
from exporter.net.smtp import TLS_VERSION_NAMES, Session, SmtpConversation, SmtpProtocolError
from exporter.probes.base import NO_RESOURCES, NoResources, ProbeContext
from exporter.results import Finding, ProbeResult, Sample, Target, sample, state_set

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


TlsContext = ProbeContext[NoResources]


def _budget(timeout: float) -> float:
    """Our own deadline: a little before the runner's, so we report what we saw."""
    return max(timeout - min(0.5, timeout * 0.1), 0.01)


class TlsProbe:
    name = "tls"

    def targets(self, config: Config) -> list[Target[TlsTargetConfig]]:
        return [
            Target.of(self.name, e.target if e.target is not None else f"mx:{e.mx_of}", e, config)
            for e in config.tls
        ]

    def resources(self, config: Config, net: Network) -> NoResources:
        return NO_RESOURCES

    async def run(self, target: Target[TlsTargetConfig], ctx: TlsContext) -> ProbeResult:
        settings = target.settings
        deadline = asyncio.get_running_loop().time() + _budget(ctx.timeout)
        if settings.mx_of is not None:
            return await _run_mx(settings.mx_of, settings, ctx, deadline)
        assert settings.target is not None
        host, port = split_host_port(settings.target)
        endpoint = Endpoint(
            host=host,
            port=port,
            label=target.name,
            name=settings.server_name or host,
            starttls=settings.use_starttls,
        )
        return await probe_endpoint(endpoint, settings, ctx, deadline)


PROBE = TlsProbe()


# ----- mx_of ----------------------------------------------------------------------------------


async def _run_mx(
    domain: str, settings: TlsTargetConfig, ctx: TlsContext, deadline: float
) -> ProbeResult:
    result = ProbeResult()
    try:
        async with asyncio.timeout_at(deadline):
            answer = await ctx.dns.query(domain, "MX")
    except DnsTempError as exc:
        result.error = f"MX lookup failed: {exc}"
        return result
    except TimeoutError:
        result.error = f"timed out looking up the MX records of {domain}"
        return result
    records = sorted(
        (
            (int(getattr(rd, "preference", 0)), str(getattr(rd, "exchange", "")))
            for rd in answer.rdatas
        ),
    )
    hosts = list(dict.fromkeys(h.rstrip(".").lower() for _, h in records if h.rstrip(".")))
    if not hosts:
        result.details["mx hosts"] = (
            f"{domain} publishes a null MX" if records else f"{domain} has no MX records"
        )
        return result
    result.details["mx hosts"] = ", ".join(f"{h}:{MX_PORT}" for h in hosts)
    endpoints = [
        Endpoint(
            host=h,
            port=MX_PORT,
            label=f"{h}:{MX_PORT}",
            name=h,
            starttls=True,
            prefix=f"{h}:{MX_PORT}",
        )
        for h in hosts
    ]
    results = await asyncio.gather(*(probe_endpoint(e, settings, ctx, deadline) for e in endpoints))
    for r in results:
        result.merge(r)
    return result


# ----- one endpoint ---------------------------------------------------------------------------


def _default_ehlo_name() -> str:
    # gethostname() reads the kernel's name: no DNS lookup (getfqdn would use the system resolver).
    name = socket.gethostname().strip()
    return name if name and all(c.isalnum() or c in ".-" for c in name) else "localhost"


async def probe_endpoint(
    ep: Endpoint, settings: TlsTargetConfig, ctx: TlsContext, deadline: float
) -> ProbeResult:
    """Probe one ``host:port``; never raises (but for cancellation)."""
    result = ProbeResult()
    session = Session()
    conversation = SmtpConversation(session, settings.ehlo_name or _default_ehlo_name())
    failure: str | None = None  # could not tell
    tls_failure: str | None = None  # the server answered with a broken TLS
    auth: tuple[bool | None, str] | None = None
    certs: list[Presented] = []
    verdict: ChainVerdict | None = None
    now = dt.datetime.now(dt.UTC)
    sni = None if parse_ip(ep.name) is not None else ep.name
    try:
        store = trust_store(settings.ca_file)
        password = settings.read_secret(f"tls {ep.label}") if settings.username else None
    except OSError as exc:
        result.error = f"cannot read ca_file {settings.ca_file}: {exc.strerror or exc}"
        return result
    except ValueError as exc:  # the secret's message names the key, never the value
        result.error = str(exc)
        return result
    try:
        async with asyncio.timeout_at(deadline):
            addresses = await ctx.dns.addresses(ep.host)
            await conversation.connect(addresses, ep.port, sni, implicit=not ep.starttls)
            await conversation.greeting()
            if ep.starttls:
                extensions = await conversation.ehlo()
                session.starttls_offered = "STARTTLS" in extensions
                if session.starttls_offered:
                    reply = await conversation.starttls(sni)
                    if 400 <= reply.code < 500:
                        failure = f"STARTTLS refused for now: {reply}"
                    elif reply.code != 220:
                        tls_failure = f"STARTTLS refused: {reply}"
            if session.handshake_done:
                certs = [load_presented(der) for der in session.chain_der]
                if not certs:
                    raise SmtpProtocolError("the server presented no certificate")
                verdict = judge(certs, ep.name, store, now)
                if password is not None and settings.username:
                    if verdict.valid:
                        auth = await conversation.auth(settings.username, password)
                    else:
                        result.details[_key(ep, "auth")] = (
                            "not tried: the certificate is not valid, and credentials are never"
                            " sent to a server whose identity could not be verified"
                        )
            elif password is not None:
                result.details[_key(ep, "auth")] = "not tried: no TLS"
    except TimeoutError:
        failure = f"timed out {session.stage}"
    except ssl.SSLError as exc:
        if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            failure = f"connection closed during {session.stage}"
        else:
            tls_failure = f"{session.stage}: {exc.reason or exc}"
    except SmtpProtocolError as exc:
        failure = str(exc)
    except DnsTempError as exc:
        failure = f"DNS lookup failed: {exc}"
    except NoAddress as exc:
        failure = str(exc)
    except ValueError as exc:  # a certificate cryptography cannot parse
        failure = f"cannot parse the server's certificate: {exc}"
    except OSError as exc:
        # A reset mid-handshake comes as a ConnectionResetError with no errno and no text.
        reason = os.strerror(exc.errno) if exc.errno else (str(exc) or type(exc).__name__)
        failure = f"{session.stage}: {reason}"
    finally:
        if failure or tls_failure:
            conversation.abort()
        else:
            conversation.close()

    if auth is not None and auth[0] is None:
        failure = auth[1]
    result.samples.extend(_samples(ep, session, certs, verdict, auth))
    result.findings.extend(_findings(ep, session, certs, verdict, auth, tls_failure, now))
    if session.greeting is not None:
        result.details[_key(ep, "greeting")] = str(session.greeting)
    if tls_failure:
        result.details[_key(ep, "tls error")] = tls_failure
    if certs:
        leaf = certs[0].summary
        result.details[_key(ep, "certificate")] = (
            f"subject {leaf.subject}; issuer {leaf.issuer}; serial {leaf.serial};"
            f" not after {_iso(leaf.not_after)}; sha256 {leaf.fingerprint_sha256}"
        )
        if not session.full_chain:
            result.details[_key(ep, "chain")] = "leaf only (this Python cannot read the chain)"
    if verdict is not None and not verdict.valid:
        result.details[_key(ep, "verification")] = verdict.valid_error or verdict.trust_error
    if failure:
        result.error = f"{ep.prefix}: {failure}" if ep.prefix else failure
    return result


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
