"""What validation concludes: a status, the reason, the zone that decided, the earliest expiry."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import dns.name
import dns.rdataset
import dns.rrset

from exporter.net.dnsmodel import DnsTempError


class Status(StrEnum):
    """RFC 4033 §5: a chain of trust from the anchors (secure), a proven unsigned delegation on
    the way (insecure), or data that should be signed and does not validate (bogus)."""

    SECURE = "secure"
    INSECURE = "insecure"
    BOGUS = "bogus"


STATUSES = tuple(s.value for s in Status)

AnswerKind = Literal["ok", "nxdomain", "nodata"]


class DnssecUnavailable(DnsTempError):
    """The DNS path does not carry DNSSEC records (a resolver that strips RRSIGs or DNSKEYs):
    nothing can be validated, which is not the same as "unsigned"."""

    FIX = (
        "use nameservers that pass DNSSEC records (queries carry the DO bit), "
        "or set global.dnssec: false"
    )


@dataclass(frozen=True)
class Verdict:
    """The DNSSEC status of one answer (``name``/``rdtype``, CNAMEs followed)."""

    name: str
    rdtype: str
    status: Status
    reason: str
    """Why, in words (empty when secure)."""
    zone: str
    """The zone that decided: the signer (secure, bogus) or the unsigned delegation (insecure)."""
    answer: AnswerKind
    rrsets: tuple[dns.rrset.RRset, ...] = ()
    """The answer's RRsets (CNAMEs first, RRSIGs left out)."""
    expiry: float | None = None
    """Earliest expiration (UNIX time) of the signatures the zone's operator keeps fresh: those
    that validated the answer (or its proof of non-existence) and the zone's DNSKEY records.
    None unless secure."""


@dataclass(frozen=True)
class ZoneState:
    """What the chain of trust says at a name: the deepest secure zone above it with its
    validated keys, or the unsigned delegation that makes it insecure, or why it is bogus."""

    status: Status
    zone: dns.name.Name
    reason: str = ""
    keys: dns.rdataset.Rdataset | None = None
    keys_expiry: float | None = None
    until: float = 0.0
    """When this conclusion must be worked out again (record TTLs, signature expirations)."""
    absent: dns.name.Name | None = None
    """The name the secure ``zone`` proves not to exist, when that makes this state bogus (a
    wildcard's name; a delegation missing from the parent's NSEC chain)."""


def worst(statuses: list[Status]) -> Status:
    """Bogus over insecure over secure."""
    if Status.BOGUS in statuses:
        return Status.BOGUS
    if Status.INSECURE in statuses:
        return Status.INSECURE
    return Status.SECURE
