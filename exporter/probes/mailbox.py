"""The mailbox provider of a recipient: who runs the mailbox a message was sent to.

A block at one mailbox provider (Gmail refusing unauthenticated mail, Outlook rate limiting)
shows in the bounces of that provider's recipients only, so SES events are counted per provider.
The provider is told first from the recipient's domain (the providers' consumer domains, a fixed
table below), then, for any other domain, optionally from its MX hosts: Google Workspace and
Microsoft 365 tenants (and Yahoo- or iCloud-hosted custom domains) are recognised by their MX
host names. Anything else is ``other``, and so is, for now, a domain whose MX cannot be looked up.

The tables are hand-written: no maintained library maps mail domains to mailbox providers. They
hold only what the providers themselves document or operate (their consumer domains and their
MX host names); a missing regional domain is counted as ``other`` until its MX is looked up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from exporter.idn import a_label
from exporter.net.dnsclient import DnsClient
from exporter.net.dnsmodel import DnsAnswer, DnsTempError

PROVIDERS = ("gmail", "microsoft", "yahoo", "apple", "other")
"""The ``provider`` label values (SPEC: ``gmail microsoft yahoo apple other``)."""
OTHER = "other"

_CONSUMER_DOMAINS: dict[str, str] = {
    "gmail.com": "gmail",
    "googlemail.com": "gmail",
    "msn.com": "microsoft",
    "passport.com": "microsoft",
    "windowslive.com": "microsoft",
    "ymail.com": "yahoo",
    "rocketmail.com": "yahoo",
    "aim.com": "yahoo",
    "icloud.com": "apple",
    "me.com": "apple",
    "mac.com": "apple",
}
# Regional variants of the big consumer brands: hotmail.co.uk, live.fr, outlook.com.br,
# yahoo.de, aol.co.uk ... (a brand label, then "com" or a country code, maybe "co."/"com.").
_BRANDS: dict[str, str] = {
    "hotmail": "microsoft",
    "outlook": "microsoft",
    "live": "microsoft",
    "yahoo": "yahoo",
    "aol": "yahoo",
}
_REGIONAL = re.compile(r"([a-z]+)\.(com|(?:com\.|co\.)?[a-z]{2})")
# Yahoo! JAPAN is another company with its own mail service.
_NOT_BRANDS = frozenset({"yahoo.co.jp", "yahoo.jp"})

# MX host suffixes of hosted mail: Google Workspace (aspmx.l.google.com, smtp.google.com,
# alt1.aspmx.l.google.com, aspmx2.googlemail.com), Microsoft 365 (<tenant>.mail.protection.
# outlook.com, and the DNSSEC-signed <tenant>.<x>.mx.microsoft), Yahoo (mta5.am0.yahoodns.net,
# also AOL's and Verizon's), iCloud+ custom domains (mx01.mail.icloud.com).
_MX_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".google.com", "gmail"),
    (".googlemail.com", "gmail"),
    (".mail.protection.outlook.com", "microsoft"),
    (".mx.microsoft", "microsoft"),
    (".yahoodns.net", "yahoo"),
    (".mail.icloud.com", "apple"),
)


def normalize_domain(domain: str) -> str:
    """Lower case, no trailing dot, no surrounding space or brackets."""
    return domain.strip().strip("<>[]").strip().rstrip(".").lower()


def a_label_domain(domain: str) -> str:
    """The domain normalised, internationalised labels as A-labels
    (:func:`exporter.idn.a_label`: ``Bücher.DE`` -> ``xn--bcher-kva.de``); '' when it is not a
    valid internationalised domain name. One spelling per domain keeps the label values
    bounded and ASCII, and matches what DNS answers for."""
    return a_label(normalize_domain(domain)) or ""


def domain_of(address: str) -> str:
    """The domain of an address (``Jane <jane@Example.COM>`` -> ``example.com``), an
    internationalised one in A-labels (:func:`a_label_domain`); '' if none.

    Only the domain is ever kept: recipients are personal data.
    """
    text = address.strip()
    if "<" in text and text.endswith(">"):
        text = text[text.rindex("<") + 1 : -1]
    local, at, domain = text.rpartition("@")
    if not at or not local:
        return ""
    domain = a_label_domain(domain)
    if not domain or len(domain) > 253 or not _DOMAIN.fullmatch(domain):
        return ""
    return domain


_DOMAIN = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?|xn--[a-z0-9.-]+", re.IGNORECASE)


def provider_of_domain(domain: str) -> str | None:
    """The provider whose consumer domain this is; None when the domain says nothing."""
    domain = normalize_domain(domain)
    known = _CONSUMER_DOMAINS.get(domain)
    if known is not None:
        return known
    if domain in _NOT_BRANDS:
        return None
    match = _REGIONAL.fullmatch(domain)
    if match is not None:
        return _BRANDS.get(match.group(1))
    return None


def provider_of_mx(hosts: Iterable[str]) -> str:
    """The provider that runs these MX hosts (the most preferred ones), else ``other``."""
    for host in hosts:
        name = "." + normalize_domain(host)
        for suffix, provider in _MX_SUFFIXES:
            if name.endswith(suffix):
                return provider
    return OTHER


def preferred_exchanges(answer: DnsAnswer) -> list[str]:
    """The exchanges of the lowest preference among the MX records of an answer."""
    records: list[tuple[int, str]] = []
    for rd in answer.rdatas:
        preference = getattr(rd, "preference", None)
        exchange = getattr(rd, "exchange", None)
        if isinstance(preference, int) and exchange is not None:
            records.append((preference, str(exchange)))
    if not records:
        return []
    best = min(p for p, _ in records)
    return sorted(host for p, host in records if p == best)


async def provider_of(domain: str, dns: DnsClient | None) -> str | None:
    """The mailbox provider of a recipient domain: its consumer domain, else (with a DNS client)
    its MX hosts, else ``other``; None when the DNS cannot tell now (the caller counts the event
    as ``other``: it cannot wait)."""
    domain = normalize_domain(domain)
    if not domain:
        return OTHER
    known = provider_of_domain(domain)
    if known is not None:
        return known
    if dns is None:
        return OTHER
    try:
        answer = await dns.query(domain, "MX")
    except DnsTempError:
        return None
    return provider_of_mx(preferred_exchanges(answer))
