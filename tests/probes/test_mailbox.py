"""The mailbox provider of a recipient domain: consumer domains, then MX hosts on a real DNS."""

from __future__ import annotations

import pytest
from conftest import make_ctx
from dnsserver import DnsServer
from hypothesis import given
from hypothesis import strategies as st

from exporter.probes.mailbox import (
    PROVIDERS,
    domain_of,
    provider_of,
    provider_of_domain,
    provider_of_mx,
)

CONSUMER = {
    "gmail.com": "gmail",
    "GoogleMail.com.": "gmail",
    "outlook.com": "microsoft",
    "hotmail.com": "microsoft",
    "hotmail.co.uk": "microsoft",
    "live.fr": "microsoft",
    "outlook.com.br": "microsoft",
    "msn.com": "microsoft",
    "yahoo.com": "yahoo",
    "yahoo.de": "yahoo",
    "ymail.com": "yahoo",
    "aol.com": "yahoo",
    "aol.co.uk": "yahoo",
    "icloud.com": "apple",
    "me.com": "apple",
    "mac.com": "apple",
}
NOT_CONSUMER = ["example.com", "yahoo.co.jp", "mail.gmail.example", "outlook.example.com",
                "gmail.co.uk.example", "livejournal.com", "hotmail", ""]  # fmt: skip


@pytest.mark.parametrize(("domain", "provider"), sorted(CONSUMER.items()))
def test_consumer_domains(domain: str, provider: str) -> None:
    assert provider_of_domain(domain) == provider


@pytest.mark.parametrize("domain", NOT_CONSUMER)
def test_other_domains_say_nothing(domain: str) -> None:
    assert provider_of_domain(domain) is None


@pytest.mark.parametrize(
    ("hosts", "provider"),
    [
        (["aspmx.l.google.com."], "gmail"),
        (["smtp.google.com"], "gmail"),
        (["aspmx2.googlemail.com"], "gmail"),
        (["example-com.mail.protection.outlook.com."], "microsoft"),
        (["example-com.o-v1.mx.microsoft"], "microsoft"),
        (["mta5.am0.yahoodns.net"], "yahoo"),
        (["mx01.mail.icloud.com"], "apple"),
        (["mx.example.com"], "other"),
        (["google.com.evil.example"], "other"),
        ([], "other"),
    ],
)
def test_mx_hosts(hosts: list[str], provider: str) -> None:
    assert provider_of_mx(hosts) == provider


def test_domain_of_keeps_only_the_domain() -> None:
    assert domain_of("Jane.Doe@Example.ORG") == "example.org"
    assert domain_of("Jane Doe <jane@Gmail.com>") == "gmail.com"
    assert domain_of('"odd@local"@example.net') == "example.net"
    for bad in ("jane", "@example.org", "jane@", "jane@exa mple.org", "jane@-"):
        assert domain_of(bad) == ""


@given(st.text(max_size=80))
def test_domain_of_any_text(text: str) -> None:
    domain = domain_of(text)
    assert "@" not in domain and domain == domain.lower()


@given(st.text(max_size=80))
def test_provider_of_domain_any_text(text: str) -> None:
    assert provider_of_domain(text) in (*PROVIDERS, None)


async def test_provider_from_mx(dns_server: DnsServer) -> None:
    dns_server.add("workspace.example", "MX", "1 aspmx.l.google.com.")
    dns_server.add("workspace.example", "MX", "5 alt1.aspmx.l.google.com.")
    dns_server.add("tenant.example", "MX", "0 tenant-example.mail.protection.outlook.com.")
    # a filtering service in front of Microsoft 365: the bounce comes from the filter
    dns_server.add("filtered.example", "MX", "10 mx1.filter.example.")
    dns_server.add("filtered.example", "MX", "20 filtered-example.mail.protection.outlook.com.")
    dns_server.add("own.example", "MX", "10 mail.own.example.")
    dns_server.add("nomx.example", "A", "192.0.2.1")
    dns_server.timeout.add("slow.example")
    ctx = make_ctx(dns_server, lifetime=0.3)
    got = {
        domain: await provider_of(domain, ctx.dns)
        for domain in ("workspace.example", "tenant.example", "filtered.example", "own.example",
                       "nomx.example", "missing.example", "slow.example", "gmail.com", "")
    }  # fmt: skip
    assert got == {
        "workspace.example": "gmail",
        "tenant.example": "microsoft",
        "filtered.example": "other",
        "own.example": "other",
        "nomx.example": "other",
        "missing.example": "other",
        "slow.example": None,
        "gmail.com": "gmail",
        "": "other",
    }
    # consumer domains are never looked up
    assert ("workspace.example", "MX") in dns_server.queries
    assert ("gmail.com", "MX") not in dns_server.queries
    assert await provider_of("workspace.example", None) == "other"
