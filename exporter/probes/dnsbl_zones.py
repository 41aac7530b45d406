"""What the exporter knows about DNS blacklists, and how it reads their answers.

A DNSBL answers a query for ``<reversed IP>.<zone>`` (or ``<domain>.<zone>``) with NXDOMAIN when
the target is not listed and with one or more A records in 127.0.0.0/8 when it is (RFC 5782).
Reading those answers well is the whole job:

* **listing codes** carry a meaning per zone (Spamhaus ZEN: 127.0.0.2 is the SBL, 127.0.0.4 the
  XBL, 127.0.0.10 the PBL...); bitmask lists (SURBL, URIBL) add one bit per sub-list;
* **error codes are never listings**: Spamhaus answers 127.255.255.254 to queries that come
  through a public or open resolver, 127.255.255.255 when a resolver sends too many, 127.255.255.252
  for a misspelt zone, and the DBL 127.0.1.255 for an IP asked as a domain. URIBL and SURBL answer
  127.0.0.1, which RFC 5782 §5 says no list may use as a listing. Any zone's 127.0.0.1 and
  127.255.255.0/24 are therefore treated as errors unless the zone declares them listing codes;
* an address **outside 127.0.0.0/8** is never a listing either: it means the resolver rewrites
  NXDOMAIN (an ISP's "search assist" page) or the zone is broken.

The self-test of RFC 5782 §5 checks that a zone works through the configured resolver: an IP list
must list 127.0.0.2 and must not list 127.0.0.1; a domain list must list ``TEST`` and not
``INVALID`` (Spamhaus' DBL uses ``dbltest.com`` instead).

:data:`KNOWN_ZONES` is the built-in table; the config's ``blacklists.zones`` entries extend or
override it (:func:`zone_info`).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Literal

from exporter.net.addr import is_ip_address

if TYPE_CHECKING:
    from exporter.config import DnsblZoneConfig

ZoneKind = Literal["ip", "domain"]
VerdictStatus = Literal["listed", "not_listed", "refused", "invalid"]
HealthStatus = Literal["healthy", "unhealthy", "refused", "unknown"]

IP_TEST = ("127.0.0.2", "127.0.0.1")
"""RFC 5782 §5: every IPv4 list lists 127.0.0.2 and never 127.0.0.1."""
DOMAIN_TEST = ("test", "invalid")
"""RFC 5782 §5: every domain list lists TEST and never INVALID."""

_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
_ERROR_RANGE = ipaddress.IPv4Network("127.255.255.0/24")
_GENERIC_ERRORS = {
    "127.0.0.1": "127.0.0.1 is never a listing (RFC 5782); lists answer it to refuse a query"
    " (URIBL, SURBL: public resolver or over the free limit)",
}


@dataclass(frozen=True)
class ZoneInfo:
    """One blacklist zone: how to read its codes, how to test it, where to delist.

    ``codes`` maps listing codes to their meaning (empty: any 127.0.0.0/8 code that is not an
    error is a listing); ``bits`` maps bit values of the last octet to sub-list names for
    bitmask lists; ``errors`` maps codes that are errors, never listings, to their meaning.
    ``delist_url`` may contain ``{target}``. ``ip_test``/``domain_test`` are the (listed,
    unlisted) self-test entries, None when the zone has none.
    """

    name: str
    title: str = ""
    codes: tuple[tuple[str, str], ...] = ()
    bits: tuple[tuple[int, str], ...] = ()
    errors: tuple[tuple[str, str], ...] = ()
    delist_url: str = ""
    note: str = ""
    ip_test: tuple[str, str] | None = IP_TEST
    domain_test: tuple[str, str] | None = DOMAIN_TEST

    @cached_property
    def _codes(self) -> dict[str, str]:
        return dict(self.codes)

    @cached_property
    def _errors(self) -> dict[str, str]:
        return dict(self.errors)

    def error_meaning(self, code: str) -> str | None:
        """The meaning of ``code`` when it is an error code for this zone, else None."""
        if code in self._errors:
            return self._errors[code]
        if code in self._codes:
            return None
        if code in _GENERIC_ERRORS:
            return _GENERIC_ERRORS[code]
        if ipaddress.IPv4Address(code) in _ERROR_RANGE:
            return f"{code} is in the error range 127.255.255.0/24, never a listing"
        return None

    def listing_meaning(self, code: str) -> str:
        """What a listing code says (the sub-list or reason), or 'unrecognised code'."""
        if code in self._codes:
            return self._codes[code]
        if self.bits and code.startswith("127.0.0."):
            value = int(code.rsplit(".", 1)[1])
            names = [name for bit, name in self.bits if value & bit]
            unknown = value & ~sum(bit for bit, _ in self.bits) & ~1
            if unknown:
                names.append(f"unknown bits {unknown:#x}")
            if names:
                return ", ".join(names)
        return "listed" if not self.codes and not self.bits else "unrecognised code"

    def delist_hint(self, target: str) -> str:
        return self.delist_url.replace("{target}", target) if self.delist_url else ""

    def self_test(self, kind: ZoneKind) -> tuple[str, str] | None:
        return self.ip_test if kind == "ip" else self.domain_test


@dataclass(frozen=True)
class Verdict:
    """How one answer of one zone reads."""

    status: VerdictStatus
    codes: tuple[str, ...] = ()
    meaning: str = ""

    @property
    def answered(self) -> bool:
        """True when the answer says something about the target (listed or not)."""
        return self.status in ("listed", "not_listed")


NOT_LISTED = Verdict("not_listed")


def classify(zone: ZoneInfo, addresses: Sequence[str]) -> Verdict:
    """Read the A records of one answer (empty: NXDOMAIN or NODATA, i.e. not listed)."""
    if not addresses:
        return NOT_LISTED
    codes = tuple(dict.fromkeys(addresses))
    outside = [a for a in codes if not _in_loopback(a)]
    if outside:
        return Verdict(
            "invalid",
            codes,
            f"answer {', '.join(outside)} is outside 127.0.0.0/8: the resolver rewrites NXDOMAIN"
            " (or the zone is broken); never a listing",
        )
    errors = [(c, m) for c in codes if (m := zone.error_meaning(c)) is not None]
    if errors:
        return Verdict("refused", codes, "; ".join(f"{c}: {m}" for c, m in errors))
    return Verdict("listed", codes, "; ".join(f"{c}: {zone.listing_meaning(c)}" for c in codes))


def _in_loopback(text: str) -> bool:
    try:
        return ipaddress.IPv4Address(text) in _LOOPBACK
    except ValueError:
        return False


@dataclass(frozen=True)
class ZoneHealth:
    """The outcome of a zone's RFC 5782 self-test through the configured resolver."""

    status: HealthStatus
    reason: str = ""

    @property
    def usable(self) -> bool:
        """False when the zone's answers must not be read as listings (or non-listings)."""
        return self.status in ("healthy", "unknown")


HEALTH_UNTESTED = ZoneHealth("healthy", "the zone has no self-test entries")


def judge_self_test(
    zone: ZoneInfo, kind: ZoneKind, listed: Verdict, unlisted: Verdict
) -> ZoneHealth:
    """Turn the verdicts for the test entry that must be listed and the one that must not be
    listed into the zone's health."""
    test = zone.self_test(kind) or ("", "")
    for verdict in (listed, unlisted):
        if verdict.status == "refused":
            return ZoneHealth(
                "refused", f"the zone refuses this resolver's queries ({verdict.meaning})"
            )
    for verdict in (listed, unlisted):
        if verdict.status == "invalid":
            return ZoneHealth("unhealthy", verdict.meaning)
    if listed.status != "listed":
        return ZoneHealth(
            "unhealthy",
            f"the zone does not list its test entry {test[0]} (RFC 5782): it is shut down,"
            " misspelt, or not answering this resolver",
        )
    if unlisted.status == "listed":
        return ZoneHealth(
            "unhealthy",
            f"the zone lists {test[1]}, which must never be listed (RFC 5782): it answers every"
            f" query as listed ({unlisted.meaning})",
        )
    return ZoneHealth("healthy")


def reverse_ip(ip: str) -> str:
    """The DNSBL query label sequence for an IP (RFC 5782 §2.1, §2.4).

    IPv4: octets reversed (``192.0.2.10`` -> ``10.2.0.192``); IPv6: the 32 nibbles reversed;
    IPv4-mapped IPv6 addresses are looked up as the IPv4 address they carry.
    """
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.reverse_pointer.rsplit(".", 2)[0]


def query_name(target: str, kind: ZoneKind, zone: str) -> str:
    """The name to look up for ``target`` (an IP or a domain) on ``zone``."""
    return f"{query_label(target, kind)}.{zone}"


def query_label(target: str, kind: ZoneKind) -> str:
    """What precedes the zone in the query name: the reversed IP, or the domain."""
    return reverse_ip(target) if kind == "ip" else target.rstrip(".").lower()


def test_query_names(zone: ZoneInfo, kind: ZoneKind) -> tuple[str, str] | None:
    """(must be listed, must not be listed) query names for the zone's self-test."""
    return _test_names(zone.name, kind, zone.self_test(kind))


@functools.lru_cache(maxsize=1024)
def _test_names(zone: str, kind: ZoneKind, test: tuple[str, str] | None) -> tuple[str, str] | None:
    if test is None:
        return None
    return query_name(test[0], kind, zone), query_name(test[1], kind, zone)


# ----- built-in knowledge -----------------------------------------------------------------------

_SPAMHAUS_ERRORS = (
    ("127.255.255.252", "typing error in the DNSBL name (Spamhaus)"),
    ("127.255.255.254", "query through a public or open resolver (Spamhaus refuses these)"),
    ("127.255.255.255", "excessive number of queries from this resolver (Spamhaus)"),
)
_SPAMHAUS_IP_CODES = (
    ("127.0.0.2", "SBL: Spamhaus Block List, a known spam source or operation"),
    ("127.0.0.3", "SBL CSS: low-reputation or snowshoe spam source"),
    ("127.0.0.4", "XBL: exploited or infected host (botnet, open proxy)"),
    ("127.0.0.5", "XBL: exploited or infected host"),
    ("127.0.0.6", "XBL: exploited or infected host"),
    ("127.0.0.7", "XBL: exploited or infected host"),
    ("127.0.0.9", "SBL DROP: hijacked or criminal netblock"),
    ("127.0.0.10", "PBL (ISP): end-user range that should not send direct-to-MX"),
    ("127.0.0.11", "PBL (Spamhaus): end-user range that should not send direct-to-MX"),
)
_SPAMHAUS_DELIST = "https://check.spamhaus.org/"


def _spamhaus_ip(name: str, title: str, codes: Iterable[tuple[str, str]]) -> ZoneInfo:
    return ZoneInfo(
        name,
        title,
        codes=tuple(codes),
        errors=_SPAMHAUS_ERRORS,
        delist_url=_SPAMHAUS_DELIST,
        note="Spamhaus refuses queries through public resolvers; use your own recursive resolver"
        " or Spamhaus DQS",
        domain_test=None,
    )


_KNOWN: tuple[ZoneInfo, ...] = (
    _spamhaus_ip("zen.spamhaus.org", "Spamhaus ZEN (SBL, CSS, XBL, PBL)", _SPAMHAUS_IP_CODES),
    _spamhaus_ip(
        "sbl.spamhaus.org", "Spamhaus SBL", _SPAMHAUS_IP_CODES[:2] + _SPAMHAUS_IP_CODES[6:7]
    ),
    _spamhaus_ip("sbl-xbl.spamhaus.org", "Spamhaus SBL and XBL", _SPAMHAUS_IP_CODES[:7]),
    _spamhaus_ip("xbl.spamhaus.org", "Spamhaus XBL", _SPAMHAUS_IP_CODES[2:6]),
    _spamhaus_ip("pbl.spamhaus.org", "Spamhaus PBL", _SPAMHAUS_IP_CODES[7:]),
    ZoneInfo(
        "dbl.spamhaus.org",
        "Spamhaus Domain Block List",
        codes=(
            ("127.0.1.2", "spam domain"),
            ("127.0.1.4", "phishing domain"),
            ("127.0.1.5", "malware domain"),
            ("127.0.1.6", "botnet C&C domain"),
            ("127.0.1.102", "abused legitimate domain (spam)"),
            ("127.0.1.103", "abused legitimate domain (spammed redirector)"),
            ("127.0.1.104", "abused legitimate domain (phishing)"),
            ("127.0.1.105", "abused legitimate domain (malware)"),
            ("127.0.1.106", "abused legitimate domain (botnet C&C)"),
        ),
        errors=(*_SPAMHAUS_ERRORS, ("127.0.1.255", "IP queries are prohibited on the DBL")),
        delist_url=_SPAMHAUS_DELIST,
        note="Spamhaus refuses queries through public resolvers; use your own recursive resolver"
        " or Spamhaus DQS",
        ip_test=None,
        domain_test=("dbltest.com", "invalid"),
    ),
    ZoneInfo(
        "bl.spamcop.net",
        "SpamCop Blocking List",
        codes=(("127.0.0.2", "reported as a spam source by SpamCop users"),),
        delist_url="https://www.spamcop.net/bl.shtml?{target}",
        note="SpamCop listings expire by themselves about 24 hours after the reports stop",
        domain_test=None,
    ),
    ZoneInfo(
        "b.barracudacentral.org",
        "Barracuda Reputation Block List",
        codes=(("127.0.0.2", "poor sending reputation (Barracuda)"),),
        delist_url="https://www.barracudacentral.org/rbl/removal-request",
        note="Barracuda answers only resolvers registered (free) at barracudacentral.org",
        domain_test=None,
    ),
    ZoneInfo(
        "psbl.surriel.com",
        "Passive Spam Block List",
        codes=(("127.0.0.2", "sent mail to PSBL spam traps"),),
        delist_url="https://psbl.org/listing?ip={target}",
        domain_test=None,
    ),
    ZoneInfo(
        "multi.surbl.org",
        "SURBL multi (domain reputation)",
        bits=((8, "PH: phishing"), (16, "MW: malware"), (64, "ABUSE: spam"), (128, "CR: cracked")),
        delist_url="https://www.surbl.org/surbl-analysis",
        ip_test=None,
        domain_test=("test.surbl.org", "invalid"),
    ),
    ZoneInfo(
        "multi.uribl.com",
        "URIBL multi (domain reputation)",
        bits=((2, "black"), (4, "grey"), (8, "red")),
        delist_url="https://admin.uribl.com/",
        ip_test=None,
        domain_test=("test.uribl.com", "invalid"),
    ),
)

KNOWN_ZONES: dict[str, ZoneInfo] = {z.name: z for z in _KNOWN}


def zone_info(name: str, custom: DnsblZoneConfig | None = None) -> ZoneInfo:
    """The knowledge for ``name``: the built-in entry (or a generic RFC 5782 zone) with the
    config's ``blacklists.zones`` entry applied: its codes, delist URL and self-test entries
    replace the built-in ones when given; its error codes are added."""
    base = KNOWN_ZONES.get(name, ZoneInfo(name))
    if custom is None:
        return base
    ip_test, domain_test = base.ip_test, base.domain_test
    if not custom.self_test:
        ip_test = domain_test = None
    elif custom.test_listed is not None and custom.test_unlisted is not None:
        pair = (custom.test_listed, custom.test_unlisted)
        if is_ip_address(custom.test_listed):
            ip_test = pair
        else:
            domain_test = pair
    codes = tuple(custom.codes.items())
    return replace(
        base,
        codes=codes or base.codes,
        bits=() if codes else base.bits,
        errors=tuple({**dict(base.errors), **custom.error_codes}.items()),
        delist_url=custom.delist_url or base.delist_url,
        ip_test=ip_test,
        domain_test=domain_test,
    )
