"""RRSIG checks (dnspython's ``validate_rrsig``) with the reason in words and the expiry kept."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import dns.dnssec
import dns.exception
import dns.name
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY
import dns.rdtypes.ANY.RRSIG
import dns.rrset

RRSIG = dns.rdtypes.ANY.RRSIG.RRSIG
DNSKEY = dns.rdtypes.ANY.DNSKEY.DNSKEY


MAX_VERIFICATIONS = 16
"""Signature verifications spent on one RRset at most (signatures x DNSKEYs sharing their key
tag): KeyTrap (CVE-2023-50387) makes a validator try every pair; unbound and BIND cap them too."""


@dataclass(frozen=True)
class SigCheck:
    """The outcome of checking an RRset's signatures made by one zone."""

    ok: bool
    expiry: float | None = None
    """The latest expiration among the signatures that validated (the RRset is valid until)."""
    labels: int | None = None
    """The RRSIG labels field of a validating signature (fewer than the owner's: a wildcard)."""
    reason: str = ""


def when(timestamp: float) -> str:
    """A UTC time for people: 2026-12-04 16:28 UTC."""
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def describe(rrset: dns.rrset.RRset) -> str:
    return f"{rrset.name.to_text()} {dns.rdatatype.to_text(rrset.rdtype)}"


def rrsigs_of(sigset: Iterable[object] | None) -> list[RRSIG]:
    return [rd for rd in sigset or () if isinstance(rd, RRSIG)]


def check_rrset(
    rrset: dns.rrset.RRset,
    sigset: Iterable[object] | None,
    zone: dns.name.Name,
    keys: dns.rdataset.Rdataset,
    now: float,
) -> SigCheck:
    """Whether an RRSIG made by ``zone`` over ``rrset`` validates with one of ``keys``."""
    what = describe(rrset)
    sigs = [s for s in rrsigs_of(sigset) if s.signer == zone and s.type_covered == rrset.rdtype]
    if not sigs:
        return SigCheck(False, reason=f"missing RRSIG: {what} has no signature by {zone}")
    best: float | None = None
    labels: int | None = None
    failures: list[tuple[int, str]] = []
    budget = [MAX_VERIFICATIONS]
    for sig in sigs:
        problem = _problem(rrset, sig, zone, keys, now, budget)
        if problem is None:
            if best is None or sig.expiration > best:
                best, labels = float(sig.expiration), sig.labels
        else:
            failures.append(problem)
    if best is not None:
        return SigCheck(True, expiry=best, labels=labels)
    failures.sort()
    return SigCheck(False, reason=f"{what}: {failures[0][1]}")


def _problem(
    rrset: dns.rrset.RRset,
    sig: RRSIG,
    zone: dns.name.Name,
    keys: dns.rdataset.Rdataset,
    now: float,
    budget: list[int],
) -> tuple[int, str] | None:
    """None when ``sig`` validates, else (rank, reason): the lowest rank is the one reported.
    Each key tried spends one of ``budget`` (shared by the RRset's signatures)."""
    if sig.expiration < now:
        return (0, f"signature expired on {when(sig.expiration)} (key tag {sig.key_tag})")
    if sig.inception > now:
        return (1, f"signature not valid before {when(sig.inception)} (key tag {sig.key_tag})")
    candidates = [
        k
        for k in keys
        if isinstance(k, DNSKEY)
        and k.algorithm == sig.algorithm
        and dns.dnssec.key_id(k) == sig.key_tag
    ]
    if not candidates:
        return (3, f"no DNSKEY of {zone} has the signature's key tag {sig.key_tag}")
    problem: tuple[int, str] | None = None
    for key in candidates:  # one at a time: dnspython would try them all
        if budget[0] <= 0:
            return (
                -1,
                f"more than {MAX_VERIFICATIONS} signature verifications needed (signatures and "
                f"DNSKEYs sharing key tag {sig.key_tag}): given up, as against KeyTrap "
                "(CVE-2023-50387)",
            )
        budget[0] -= 1
        one = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.DNSKEY)
        one.add(key)
        problem = _verify(rrset, sig, zone, one, now)
        if problem is None:
            return None
    return problem


def _verify(
    rrset: dns.rrset.RRset,
    sig: RRSIG,
    zone: dns.name.Name,
    key: dns.rdataset.Rdataset,
    now: float,
) -> tuple[int, str] | None:
    try:
        dns.dnssec.validate_rrsig(rrset, sig, {zone: key}, now=now)
    except dns.exception.UnsupportedAlgorithm:
        return (4, f"signature algorithm {sig.algorithm} is not supported")
    except dns.exception.ValidationFailure as exc:
        return (2, f"signature by key tag {sig.key_tag} does not verify ({exc})")
    except (dns.exception.DNSException, ValueError, TypeError) as exc:
        # A key or signature that cannot even be read (a malformed key, an odd curve).
        return (2, f"signature by key tag {sig.key_tag} cannot be checked ({type(exc).__name__})")
    return None
