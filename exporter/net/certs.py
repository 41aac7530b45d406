"""Judging a presented certificate chain, apart from the handshake that fetched it.

The ``tls`` probe fetches the chain without verification (so that it can report an expired,
self-signed or misnamed certificate) and judges it here, offline, with OpenSSL's own chain
verification (``X509_verify_cert`` through pyOpenSSL's ``X509StoreContext``): the same path
building, validity and constraint checks as Python's ``ssl`` module and the OpenSSL-based MTAs
(Postfix, Exim) apply. Roots are the system bundle (OpenSSL's default verify paths as Python's
``ssl`` reports them, honouring ``SSL_CERT_FILE``/``SSL_CERT_DIR``) plus an optional ``ca_file``.

Why not ``cryptography.x509.verification``: its WebPKI policy is stricter than what senders
apply; it rejects, for example, a critical subjectAltName beside a non-empty subject (trustme's
certificates, and many private CAs), which would page as "untrusted" for a certificate every
OpenSSL-based sender accepts.

Three questions are asked separately so that a finding says *why*:

* **name**: does the leaf's subjectAltName cover the name (RFC 6125: DNS names with a wildcard
  only as the whole left-most label, IP addresses for IP names, no common-name fallback)?
  Hand-written (small, property-tested) because OpenSSL's X509_check_host is not exposed by
  Python 3.11 or pyOpenSSL, and the answer is needed even when the chain is untrusted.
* **trust**: does the chain lead to a trusted root (and may the leaf serve TLS, per its extended
  key usage)? Judged at a moment inside every presented certificate's validity, so an expired
  certificate from a trusted CA is reported as expired, not also as untrusted.
* **valid** (the ``tls_cert_valid`` metric): trusted now, in validity now, and the name matches.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import crypto

from exporter.net.tlsctx import check_ca_file

# ----- names ----------------------------------------------------------------------------------


def _ascii_name(name: str) -> str | None:
    """Lower-case A-label form of a DNS name, or None if it cannot be one."""
    name = name.strip().rstrip(".").lower()
    if not name:
        return None
    try:
        return name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        return None


def parse_ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.strip().strip("[]"))
    except ValueError:
        return None


def dns_name_matches(pattern: str, name: str) -> bool:
    """RFC 6125 §6.4: exact match, or ``*.rest`` matching exactly one left-most label."""
    pat = _ascii_name(pattern)
    host = _ascii_name(name)
    if pat is None or host is None:
        return False
    if pat == host:
        return True
    if not pat.startswith("*."):
        return False
    rest = pat[2:]
    # The wildcard must stand for a whole, non-empty label and not cover a public suffix-like
    # bare TLD: '*.com' is refused (at least two labels after the wildcard).
    if "*" in rest or rest.count(".") < 1:
        return False
    first, sep, tail = host.partition(".")
    return bool(sep) and bool(first) and tail == rest


def san_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of the certificate's subjectAltName (empty if absent)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns_names = [str(n) for n in ext.get_values_for_type(x509.DNSName)]
    ips = [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    return dns_names, ips


def name_matches(cert: x509.Certificate, name: str) -> bool:
    """Does the leaf's subjectAltName cover ``name`` (a host name or an IP address)?"""
    dns_names, ips = san_names(cert)
    ip = parse_ip(name)
    if ip is not None:
        return any(parse_ip(i) == ip for i in ips)
    return any(dns_name_matches(p, name) for p in dns_names)


# ----- trust store ----------------------------------------------------------------------------


def _system_locations() -> list[tuple[str | None, str | None]]:
    return list(
        _system_locations_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    )


@functools.lru_cache(maxsize=4)
def _system_locations_for(
    env_file: str | None, env_dir: str | None
) -> tuple[tuple[str | None, str | None], ...]:
    """OpenSSL's default CA file or directory as Python's ssl module sees them."""
    paths = ssl.get_default_verify_paths()
    if paths.cafile and Path(paths.cafile).is_file():
        return ((paths.cafile, None),)
    if paths.capath and Path(paths.capath).is_dir():
        return ((None, paths.capath),)
    return ()


@dataclass(frozen=True)
class TrustStore:
    """Where trusted roots come from, and an OpenSSL store of them for verifying *now*.

    Verifying at another moment builds a fresh store: pyOpenSSL's ``X509Store.set_time`` does not
    take effect on a store that has already verified (OpenSSL keeps the first parameters), so the
    shared store is never given a time.
    """

    locations: tuple[tuple[str | None, str | None], ...]
    current: crypto.X509Store

    def at(self, when: dt.datetime) -> crypto.X509Store:
        store = _load(self.locations)
        store.set_time(when)
        return store


def _load(locations: tuple[tuple[str | None, str | None], ...]) -> crypto.X509Store:
    store = crypto.X509Store()
    for cafile, capath in locations:
        store.load_locations(cafile, capath)
    return store


_store_lock = threading.Lock()
_store_cache: dict[tuple[object, ...], TrustStore] = {}


def trust_store(ca_file: str | None, *, system: bool = True) -> TrustStore:
    """The system roots plus ``ca_file``, cached until a file changes.

    Raises OSError when ``ca_file`` cannot be read (or is no regular file), ValueError when it
    holds no certificate.
    """
    locations = _system_locations() if system else []
    if ca_file:
        check_ca_file(ca_file)
        locations.append((ca_file, None))
    key = tuple((f, d, os.stat(f or d or ".").st_mtime_ns) for f, d in locations)
    with _store_lock:
        cached = _store_cache.get(key)
    if cached is not None:
        return cached
    usable: list[tuple[str | None, str | None]] = []
    for cafile, capath in locations:
        try:
            _load(((cafile, capath),))
        except crypto.Error:
            if cafile == ca_file:
                raise ValueError(f"ca_file {ca_file} holds no PEM certificate") from None
            continue
        usable.append((cafile, capath))
    trust = TrustStore(tuple(usable), _load(tuple(usable)))
    with _store_lock:
        if len(_store_cache) > 32:
            _store_cache.clear()
        _store_cache[key] = trust
    return trust


# ----- reading a chain off a connection ---------------------------------------------------------

_DER = 2  # _ssl.ENCODING_DER


def accept_any(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """Make a client context accept any certificate, version and cipher (it never verifies), so
    that an expired, self-signed or misnamed certificate is still fetched; :func:`judge` judges
    it afterwards. Returns ``ctx``."""
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):  # a build without old protocols or levels
        pass
    return ctx


def presented_chain(obj: ssl.SSLObject) -> tuple[list[bytes], bool]:
    """The certificate chain as presented (DER, leaf first), and whether it is complete.

    Python 3.13 has ``SSLObject.get_unverified_chain()``; 3.10-3.12 have the same call on the
    private ``_sslobj`` (returning ``_ssl.Certificate`` objects). Without either, only the leaf.
    """
    public = getattr(obj, "get_unverified_chain", None)
    if public is not None:
        certs = public() or []
        return [c if isinstance(c, bytes) else c.public_bytes(_DER) for c in certs], True
    private = getattr(getattr(obj, "_sslobj", None), "get_unverified_chain", None)
    if private is not None:
        return [c.public_bytes(_DER) for c in private() or []], True
    leaf = obj.getpeercert(binary_form=True)
    return ([leaf] if leaf else []), False


# ----- judging a chain ------------------------------------------------------------------------


@dataclass(frozen=True)
class CertSummary:
    subject: str
    issuer: str
    serial: str
    fingerprint_sha256: str
    not_before: float
    not_after: float


def summarize(cert: x509.Certificate, der: bytes | None = None) -> CertSummary:
    der = der if der is not None else cert.public_bytes(Encoding.DER)
    return CertSummary(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
    )


@dataclass(frozen=True)
class Presented:
    """One certificate as the server presented it: DER, parsed, summarized (each done once)."""

    der: bytes
    cert: x509.Certificate
    summary: CertSummary


@functools.lru_cache(maxsize=1024)
def load_presented(der: bytes) -> Presented:
    """Parse one DER certificate; raises ValueError when cryptography cannot.

    Kept by its bytes (the result is immutable): a server presents the same chain probe after
    probe, and parsing and summarizing it (subject and issuer as RFC 4514 text, the SHA-256
    fingerprint) was about 0.2 ms of a 2.7 ms probe (bench/README.md)."""
    cert = x509.load_der_x509_certificate(der)
    return Presented(der, cert, summarize(cert, der))


@dataclass(frozen=True)
class ChainVerdict:
    """What the chain is worth, with reasons for people."""

    valid: bool
    """Strict verification now for the checked name: trusted, in validity, name matches."""
    name_ok: bool
    trusted: bool
    trust_error: str = ""
    valid_error: str = ""
    verified_not_after: float | None = None
    """Earliest notAfter along the verified path (leaf to root) when ``valid``."""


def _server_usage_error(leaf: x509.Certificate) -> str:
    """Non-empty when the leaf's extended key usage excludes TLS servers."""
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return ""
    allowed = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
    if allowed.intersection(usages):
        return ""
    return "the certificate's extended key usage does not include TLS server authentication"


def _verify(
    trust: TrustStore, chain: list[Presented], when: dt.datetime | None
) -> tuple[list[x509.Certificate] | None, str]:
    """OpenSSL's X509_verify_cert now (``when`` None) or at ``when``.

    Returns the verified path (leaf to root), or None and the reason.
    """
    leaf, *rest = (crypto.load_certificate(crypto.FILETYPE_ASN1, p.der) for p in chain)
    store = trust.current if when is None else trust.at(when)
    context = crypto.X509StoreContext(store, leaf, rest)
    try:
        path = context.get_verified_chain()
    except crypto.X509StoreContextError as exc:
        return None, _describe(exc)
    return [c.to_cryptography() for c in path], ""


def _describe(exc: crypto.X509StoreContextError) -> str:
    cert = exc.certificate
    where = f" at {cert.to_cryptography().subject.rfc4514_string()}" if cert is not None else ""
    errors = getattr(exc, "errors", None)
    message = str(errors[2]) if errors and len(errors) > 2 else str(exc)
    return f"{message}{where}"


def _inside(now: dt.datetime, start: dt.datetime, end: dt.datetime) -> dt.datetime:
    """``now`` if within [start, end], else a second inside the window (edges are ambiguous)."""
    if start > end or start <= now <= end:
        return now
    second = dt.timedelta(seconds=1)
    return max(start, end - second) if now > end else min(end, start + second)


VALID_VERDICTS_KEPT = 1024
_valid_verdicts: dict[tuple[tuple[bytes, ...], str, TrustStore], tuple[float, ChainVerdict]] = {}
"""Valid verdicts by (chain, name, trust store) with the latest notBefore of the presented
chain: given again from then until the earliest notAfter of their verified path (:func:`judge`).
Only ever touched from the event loop's thread."""


def judge(
    chain: list[Presented],
    name: str,
    trust: TrustStore,
    now: dt.datetime,
) -> ChainVerdict:
    """Judge a presented chain (leaf first) for ``name`` against ``trust``.

    ``now`` is the current time (validity is checked by OpenSSL against the clock).

    A valid verdict is kept and given again for the same chain, name and trust store (a new
    store when a CA file changes) from the latest notBefore of the presented chain until the
    earliest notAfter of the verified path: OpenSSL's verification depends on nothing else (no
    revocation is checked), and a path valid now is valid over that window. Verifying was the
    largest part of the probe's own CPU (``X509_verify_cert`` and loading the chain into
    pyOpenSSL, 0.2-0.3 ms a probe; bench/README.md), and the daemon meets the same chain at
    every probe. Anything not valid is judged afresh each time.
    """
    key = (tuple(p.der for p in chain), name, trust)
    kept = _valid_verdicts.get(key)
    at = now.timestamp()
    if kept is not None:
        not_before, verdict = kept
        assert verdict.verified_not_after is not None
        if not_before <= at < verdict.verified_not_after:
            return verdict
        del _valid_verdicts[key]
    verdict = _judge(chain, name, trust, now)
    if verdict.valid and verdict.verified_not_after is not None:
        if len(_valid_verdicts) >= VALID_VERDICTS_KEPT:
            _valid_verdicts.clear()
        not_before = max(p.summary.not_before for p in chain)
        _valid_verdicts[key] = (not_before, verdict)
    return verdict


def _judge(
    chain: list[Presented],
    name: str,
    trust: TrustStore,
    now: dt.datetime,
) -> ChainVerdict:
    leaf = chain[0].cert
    name_ok = name_matches(leaf, name)
    usage_error = _server_usage_error(leaf)
    path, now_error = _verify(trust, chain, None)
    if path is not None and name_ok and not usage_error:
        verified_not_after = min(c.not_valid_after_utc.timestamp() for c in path)
        return ChainVerdict(True, True, True, verified_not_after=verified_not_after)
    start = max(p.cert.not_valid_before_utc for p in chain)
    end = min(p.cert.not_valid_after_utc for p in chain)
    when = _inside(now, start, end)
    if when == now:
        trusted_path, trust_error = path, now_error
    else:
        trusted_path, trust_error = _verify(trust, chain, when)
    if usage_error:
        trust_error = usage_error
    trusted = trusted_path is not None and not usage_error
    if not name_ok:
        valid_error = f"the certificate does not cover {name}"
    else:
        valid_error = now_error or usage_error
    return ChainVerdict(False, name_ok, trusted, trust_error, valid_error)
