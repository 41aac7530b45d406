"""The one DNS client every probe uses.

A thin layer over dnspython's async resolver that gives probes what they need and nothing else:

* answers classified as the RFC 7208 / RFC 7489 world sees them: records (``ok``), ``nxdomain``
  or ``nodata`` — real answers — versus a *temporary failure* (timeout, SERVFAIL, REFUSED,
  malformed reply), raised as :class:`DnsTempError` so that no probe can mistake "could not tell"
  for "record missing";
* a cache for the lifetime of one client (one probe cycle), holding in-flight lookups too, so a
  cycle never asks the same question twice even when sub-checks run concurrently;
* a semaphore bounding the number of queries in flight;
* the configured nameservers (``host`` or ``host:port``) applied to every lookup.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver

AnswerStatus = Literal["ok", "nxdomain", "nodata"]


class DnsTempError(Exception):
    """The DNS could not answer (timeout, SERVFAIL, REFUSED, malformed reply): nothing is known."""

    def __init__(self, name: str, rdtype: str, reason: str) -> None:
        super().__init__(f"{name} {rdtype}: {reason}")
        self.name = name
        self.rdtype = rdtype
        self.reason = reason


@dataclass(frozen=True)
class DnsAnswer:
    """A definite answer: records, NXDOMAIN or NODATA."""

    name: str
    rdtype: str
    status: AnswerStatus
    rdatas: tuple[dns.rdata.Rdata, ...] = ()
    canonical_name: str = ""
    """The name the records were found at after following CNAMEs ('' when none were followed)."""

    @property
    def exists(self) -> bool:
        return self.status == "ok" and bool(self.rdatas)

    def texts(self) -> list[str]:
        """TXT records with their character-strings joined (RFC 7208 §3.3), decoded leniently."""
        out: list[str] = []
        for rd in self.rdatas:
            strings = getattr(rd, "strings", None)
            if strings is None:
                continue
            out.append(b"".join(strings).decode("utf-8", errors="replace"))
        return out

    def addresses(self) -> list[str]:
        """A/AAAA records as address strings."""
        return [rd.to_text() for rd in self.rdatas if rd.rdtype in (1, 28)]


def parse_nameserver(spec: str) -> tuple[str, int]:
    """Parse ``host``, ``host:port``, ``v6addr`` or ``[v6addr]:port`` into (address, port).

    Raises ValueError with a human message when the text is not an IP address with optional port.
    """
    text = spec.strip()
    port = 53
    host = text
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in nameserver {spec!r}")
        host = text[1:end]
        rest = text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"unexpected text after ']' in nameserver {spec!r}")
            port = _parse_port(rest[1:], spec)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _parse_port(port_text, spec)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"nameserver {spec!r} is not an IP address (use 'host' or 'host:port' with an IP)"
        ) from None
    return host, port


def _parse_port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port in nameserver {spec!r}")
    return int(text)


def make_resolver(
    nameservers: Sequence[str] = (), *, attempt_timeout: float = 2.0, lifetime: float = 5.0
) -> dns.asyncresolver.Resolver:
    """A dnspython resolver for the given nameservers (empty: the system's resolv.conf)."""
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        servers: list[str | dns.nameserver.Nameserver] = []
        for spec in nameservers:
            host, port = parse_nameserver(spec)
            servers.append(dns.nameserver.Do53Nameserver(host, port))
        resolver.nameservers = servers
    else:
        resolver = dns.asyncresolver.Resolver(configure=True)
    resolver.timeout = attempt_timeout
    resolver.lifetime = lifetime
    resolver.use_edns(0, 0, 1232)
    return resolver


@dataclass
class DnsStats:
    queries: int = 0
    cache_hits: int = 0


@dataclass
class DnsClient:
    """One probe cycle's view of the DNS: cached, bounded, classified.

    Create one per probe run (the cache lives as long as the client); the dnspython resolver
    underneath may be shared.
    """

    resolver: dns.asyncresolver.Resolver
    max_in_flight: int = 64
    stats: DnsStats = field(default_factory=DnsStats)
    _cache: dict[tuple[str, str], asyncio.Future[DnsAnswer]] = field(default_factory=dict)
    _sem: asyncio.Semaphore | None = None

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        """Look up ``name``/``rdtype``; raise :class:`DnsTempError` when the DNS cannot tell."""
        key = (normalize_name(name), rdtype.upper())
        cached = self._cache.get(key)
        if cached is not None:
            self.stats.cache_hits += 1
            return await asyncio.shield(cached)
        fut: asyncio.Future[DnsAnswer] = asyncio.get_running_loop().create_future()
        self._cache[key] = fut
        try:
            answer = await self._lookup(key[0], key[1])
        except BaseException as exc:
            if isinstance(exc, DnsTempError):
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: other waiters may not exist
            else:
                # Cancellation or a bug: do not poison the cache for the rest of the cycle.
                del self._cache[key]
                fut.cancel()
            raise
        fut.set_result(answer)
        return answer

    async def _lookup(self, name: str, rdtype: str) -> DnsAnswer:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_in_flight)
        async with self._sem:
            self.stats.queries += 1
            try:
                ans = await self.resolver.resolve(
                    name, rdtype, search=False, raise_on_no_answer=False
                )
            except dns.resolver.NXDOMAIN:
                return DnsAnswer(name, rdtype, "nxdomain")
            except dns.resolver.NoAnswer:
                return DnsAnswer(name, rdtype, "nodata")
            except dns.resolver.LifetimeTimeout:
                raise DnsTempError(name, rdtype, "timeout") from None
            except dns.resolver.NoNameservers as exc:
                raise DnsTempError(name, rdtype, _no_nameservers_reason(exc)) from None
            except dns.resolver.YXDOMAIN:
                raise DnsTempError(name, rdtype, "YXDOMAIN") from None
            except dns.name.NameTooLong:
                raise DnsTempError(name, rdtype, "name too long") from None
            except dns.exception.DNSException as exc:
                raise DnsTempError(name, rdtype, type(exc).__name__) from None
            except (OSError, ValueError) as exc:
                raise DnsTempError(name, rdtype, f"{type(exc).__name__}: {exc}") from None
        rrset = ans.rrset
        if rrset is None or len(rrset) == 0:
            return DnsAnswer(name, rdtype, "nodata")
        canonical = normalize_name(ans.canonical_name.to_text())
        return DnsAnswer(
            name,
            rdtype,
            "ok",
            tuple(rrset),
            canonical_name="" if canonical == name else canonical,
        )


def _no_nameservers_reason(exc: dns.resolver.NoNameservers) -> str:
    errors = exc.kwargs.get("errors") or []
    reasons: list[str] = []
    for err in errors:
        # dnspython gives (server, tcp, port, error_or_rcode_text, response) tuples
        detail = err[3] if len(err) > 3 else err
        text = str(detail)
        if text and text not in reasons:
            reasons.append(text)
    return "; ".join(reasons) if reasons else "no nameserver answered"


def normalize_name(name: str) -> str:
    """Lower-case, no trailing dot."""
    return name.strip().rstrip(".").lower()
