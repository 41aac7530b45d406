"""What a DNS lookup gives a probe: a definite answer, or "could not tell".

Answers are classified as the RFC 7208 / RFC 7489 world sees them: records (``ok``), ``nxdomain``
or ``nodata`` — real answers — versus a *temporary failure* (timeout, SERVFAIL, REFUSED,
malformed reply), raised as :class:`DnsTempError` so that no probe can mistake "could not tell"
for "record missing".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import dns.rdata

AnswerStatus = Literal["ok", "nxdomain", "nodata"]


class DnsTempError(Exception):
    """The DNS could not answer (timeout, SERVFAIL, REFUSED, malformed reply): nothing is known."""

    def __init__(self, name: str, rdtype: str, reason: str) -> None:
        super().__init__(f"{name} {rdtype}: {reason}")
        self.name = name
        self.rdtype = rdtype
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """A definite answer: records, NXDOMAIN or NODATA.

    Slotted: no ``__dict__`` per answer (a DNS cycle of 1,000 domains makes 7,000 of them and
    keeps them in the shared cache), one object less for the garbage collector to scan."""

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


class NoAddress(Exception):
    """The host name has no A or AAAA record (a definite answer, unlike :class:`DnsTempError`)."""


@dataclass(frozen=True, slots=True)
class HostAddresses:
    """A host's A and AAAA records as :meth:`exporter.net.dnsclient.DnsClient.resolve_host`
    found them; a lookup that could not tell is in ``failures``, not silently empty."""

    host: str
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    canonical_name: str = ""
    """The name the addresses were found at after following CNAMEs ('' when none)."""
    failures: tuple[DnsTempError, ...] = ()

    @property
    def all(self) -> list[str]:
        """Every address, IPv4 first."""
        return [*self.ipv4, *self.ipv6]

    @property
    def exists(self) -> bool:
        return bool(self.ipv4 or self.ipv6)

    def usable(self) -> list[str]:
        """The addresses to connect to; raises :class:`DnsTempError` when there are none and a
        lookup could not tell, :class:`NoAddress` when DNS said there are none."""
        if self.ipv4 or self.ipv6:
            return self.all
        if self.failures:
            raise self.failures[0]
        raise NoAddress(f"{self.host} has no A or AAAA record")
