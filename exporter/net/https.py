"""One HTTPS GET the way a probe needs it: resolved through the exporter's DNS, judged afterwards.

:func:`https_get` fetches ``https://host[:port]/path`` with aiohttp's client:

* the host is resolved by the injected ``addresses(host)`` (the probe's DNS client, hence the
  configured nameservers), handed to aiohttp through a fixed :class:`aiohttp.abc.AbstractResolver`
  — never the system resolver; the connection goes to a resolved address with SNI and ``Host``
  set to the host name;
* the TLS handshake does not verify, so that an expired, self-signed or misnamed certificate is
  still seen (its expiry is a metric); the chain is judged afterwards with the same OpenSSL
  verification as the ``tls`` probe (:func:`exporter.net.certs.judge`: system roots plus
  an optional ``ca_file``);
* no redirect is followed (the status and ``Location`` are returned), the body is read up to
  ``max_body`` bytes (more is reported as ``truncated``), and everything from the DNS lookup to
  the last byte runs under one deadline; no proxy from the environment, no cookies.

How the chain is read: aiohttp releases the connection as soon as a response without a body (a
redirect, an empty 404) has been parsed, so the transport is gone before the caller sees the
response. The TLS context is therefore a small :class:`ssl.SSLContext` subclass, made per fetch,
whose ``wrap_bio`` (public API; both asyncio's and uvloop's TLS transports call it) keeps the
:class:`ssl.SSLObject` it makes; the certificates are read from it after the exchange. That keeps
aiohttp (HTTP framing, chunked bodies, content decoding) instead of a hand-written HTTP client.

Failures raise one family: :class:`HttpsError` and its kinds, each also the matching builtin
(:class:`HttpsTimeout` is a ``TimeoutError``, :class:`HttpsConnectError` a ``ConnectionError``).
Errors of ``addresses`` (the DNS layer's own) propagate unchanged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from exporter.net.certs import (
    CertSummary,
    ChainVerdict,
    Presented,
    TrustStore,
    accept_any,
    judge,
    load_presented,
    presented_chain,
    trust_store,
)
from exporter.net.smtp import TLS_VERSION_NAMES

Addresses = Callable[[str], Awaitable[list[str]]]
"""``addresses(host)``: the host's addresses to connect to, in order of preference."""

USER_AGENT = "deliverability-exporter"
_CHUNK = 16384


class HttpsError(Exception):
    """The fetch ended without a complete response."""


class HttpsTimeout(HttpsError, TimeoutError):
    """Nothing (or not all) came within the time allowed."""


class HttpsConnectError(HttpsError, ConnectionError):
    """No TCP connection: refused, reset, unreachable."""


class HttpsTlsError(HttpsError):
    """The TLS handshake failed (the server's answer, not a certificate judgement)."""


class HttpsProtocolError(HttpsError):
    """The server did not speak HTTP/1.1 properly (closed early, malformed response or body)."""


@dataclass(frozen=True)
class HttpsResponse:
    """What came back; the certificate fields are about the connection that carried it."""

    url: str
    status: int
    reason: str
    location: str | None
    """The ``Location`` header (redirects are never followed)."""
    content_type: str
    """The ``Content-Type`` header as sent ('' when absent)."""
    media_type: str
    """Its ``type/subtype``, lower case ('' when absent)."""
    body: bytes
    truncated: bool
    """The body was longer than ``max_body``; ``body`` holds its first ``max_body`` bytes."""
    tls_version: str | None
    chain: tuple[Presented, ...]
    """The certificates as presented, leaf first (empty when none could be read)."""
    verdict: ChainVerdict | None
    """The chain judged for the host name (None without a certificate)."""
    cert_error: str
    """Why there is no verdict ('' when there is one)."""
    addresses: tuple[str, ...]
    elapsed: float

    @property
    def certificate(self) -> CertSummary | None:
        """The leaf certificate's summary (subject, issuer, validity)."""
        return self.chain[0].summary if self.chain else None


def media_type(content_type: str) -> str:
    """``type/subtype`` of a ``Content-Type`` value, lower case, without parameters."""
    return content_type.partition(";")[0].strip().lower()


class _FixedResolver(AbstractResolver):
    """Answers aiohttp's lookups for one host with addresses found beforehand."""

    def __init__(self, host: str, addresses: list[str]) -> None:
        self._host = host
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.rstrip(".").lower() != self._host:
            raise OSError(f"{host} is not the host being fetched")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=socket.IPPROTO_TCP,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self._addresses
        ]

    async def close(self) -> None:
        return None


class _RecordingContext(ssl.SSLContext):
    """A client context that verifies nothing and keeps every TLS object it makes."""

    made: list[ssl.SSLObject]

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        obj = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        self.made.append(obj)
        return obj


def _recording_context() -> _RecordingContext:
    ctx = _RecordingContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.made = []
    accept_any(ctx)
    return ctx


def _handshaken(ctx: _RecordingContext) -> ssl.SSLObject | None:
    """The last TLS object whose handshake completed."""
    for obj in reversed(ctx.made):
        try:
            obj.getpeercert(binary_form=True)
        except ValueError:
            continue
        return obj
    return None


async def _read_capped(resp: aiohttp.ClientResponse, max_body: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        room = max_body - size
        if len(chunk) > room:
            chunks.append(chunk[:room])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def _judge(
    ctx: _RecordingContext, host: str, trust: TrustStore
) -> tuple[str | None, tuple[Presented, ...], ChainVerdict | None, str]:
    obj = _handshaken(ctx)
    if obj is None:
        return None, (), None, "no TLS session was recorded"
    version = obj.version()
    tls_version = TLS_VERSION_NAMES.get(version or "", version)
    try:
        chain = tuple(load_presented(der) for der in presented_chain(obj)[0])
    except ValueError as exc:
        return tls_version, (), None, f"cannot parse the server's certificate: {exc}"
    if not chain:
        return tls_version, (), None, "the server presented no certificate"
    return tls_version, chain, judge(list(chain), host, trust, dt.datetime.now(dt.UTC)), ""


async def https_get(
    host: str,
    path: str = "/",
    *,
    addresses: Addresses,
    deadline: float,
    port: int = 443,
    max_body: int = 65536,
    trust: TrustStore | None = None,
    user_agent: str = USER_AGENT,
) -> HttpsResponse:
    """GET ``https://host[:port]path``; see the module docstring for what is and is not done.

    ``deadline``: event-loop time (:meth:`asyncio.AbstractEventLoop.time`) by which everything,
    the DNS lookup included, must be done; it is a parameter rather than the caller's
    ``asyncio.timeout_at`` so that a timeout can say which step stalled.
    ``trust``: the roots to judge the certificate against (default: the system's). Raises
    :class:`HttpsError` (or its kinds) when no complete response came; the errors of
    ``addresses`` unchanged.
    """
    name = host.strip().rstrip(".").lower()
    url = URL.build(scheme="https", host=name, port=None if port == 443 else port, path=path)
    roots = trust if trust is not None else trust_store(None)
    ctx = _recording_context()
    stage = "resolving the host"
    loop = asyncio.get_running_loop()
    started = loop.time()
    found: list[str] = []
    try:
        async with asyncio.timeout_at(deadline):
            found = await addresses(name)
            stage = "connecting"
            connector = aiohttp.TCPConnector(
                resolver=_FixedResolver(name, found),
                ssl=ctx,
                force_close=True,
                use_dns_cache=False,
                limit=1,
            )
            async with (
                aiohttp.ClientSession(
                    connector=connector,
                    timeout=aiohttp.ClientTimeout(total=None),
                    cookie_jar=aiohttp.DummyCookieJar(),
                    trust_env=False,
                ) as session,
                session.get(url, allow_redirects=False, headers={"User-Agent": user_agent}) as resp,
            ):
                stage = "reading the body"
                body, truncated = await _read_capped(resp, max_body)
    except TimeoutError:
        stage = _after_handshake(ctx, stage)
        allowed = max(0.0, deadline - started)
        raise HttpsTimeout(f"{url}: no answer within {allowed:.1f} s ({stage})") from None
    except aiohttp.ClientSSLError as exc:
        raise HttpsTlsError(f"{url}: TLS handshake failed: {_reason(exc)}") from None
    except aiohttp.ClientConnectorError as exc:
        raise HttpsConnectError(f"{url}: cannot connect: {_reason(exc)}") from None
    except aiohttp.ServerDisconnectedError:
        stage = _after_handshake(ctx, stage)
        raise HttpsProtocolError(f"{url}: the server closed the connection ({stage})") from None
    except aiohttp.ClientError as exc:  # a malformed response: too long a header, a bad chunk
        stage = _after_handshake(ctx, stage)
        raise HttpsProtocolError(f"{url}: {stage}: {_reason(exc)}") from None
    except ssl.SSLError as exc:
        raise HttpsTlsError(f"{url}: TLS error {stage}: {exc.reason or exc}") from None
    except OSError as exc:
        raise HttpsConnectError(f"{url}: {stage}: {_reason(exc)}") from None
    tls_version, chain, verdict, cert_error = _judge(ctx, name, roots)
    content_type = resp.headers.get("Content-Type", "")
    return HttpsResponse(
        url=str(url),
        status=resp.status,
        reason=resp.reason or "",
        location=resp.headers.get("Location"),
        content_type=content_type,
        media_type=media_type(content_type),
        body=body,
        truncated=truncated,
        tls_version=tls_version,
        chain=chain,
        verdict=verdict,
        cert_error=cert_error,
        addresses=tuple(found),
        elapsed=loop.time() - started,
    )


def _after_handshake(ctx: _RecordingContext, stage: str) -> str:
    """The step that failed: aiohttp is still "connecting" until the response headers are in,
    but after a completed handshake the server is what is being waited for."""
    if stage == "connecting" and _handshaken(ctx) is not None:
        return "waiting for the response"
    return stage


def _reason(exc: BaseException) -> str:
    """A short reason: the OS error text where there is one, else the message or the type."""
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
