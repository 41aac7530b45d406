"""Internationalized domain names in the config: A-labels (xn--) before any DNS or HTTPS use."""

from __future__ import annotations

import pytest
from dnsserver import DnsServer

from exporter.config import ConfigError, parse_config
from exporter.net.dnsclient import make_resolver
from exporter.probes import PROBES
from exporter.runner import Runtime, run_probe

ALABEL = "xn--bcher-kva.example"


def problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


@pytest.mark.parametrize("name", ["bücher.example", "BÜCHER.Example.", "bücher\u3002example"])
def test_domains_become_a_labels(name: str) -> None:
    config = parse_config(
        {
            "domains": [{"domain": name, "return_path_domain": f"bounce.{name}"}],
            "tls": [{"mx_of": name}, {"target": "smtp.bücher.example:587"}],
        }
    )
    (domain,) = config.domains
    assert domain.domain == ALABEL
    assert domain.return_path_domain == f"bounce.{ALABEL}"
    assert config.tls[0].mx_of == ALABEL
    assert config.tls[1].target == f"smtp.{ALABEL}:587"


def test_dkim_selectors_become_a_labels() -> None:
    config = parse_config({"domains": [{"domain": ALABEL, "dkim_selectors": ["Straße", "s1"]}]})
    assert config.domains[0].dkim_selectors == ["xn--strae-oqa", "s1"]  # IDNA 2008: not "strasse"


def test_a_labels_and_ascii_are_unchanged() -> None:
    config = parse_config(
        {"domains": [{"domain": ALABEL}], "tls": [{"target": "SMTP.Example.com:587"}]}
    )
    assert config.domains[0].domain == ALABEL
    assert config.tls[0].target == "SMTP.Example.com:587"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("☃.example", "U+2603"),
        ("müller-.example", "hyphen"),
        ("ü" * 70 + ".example", "too long"),
        ("a\u200db.example", "U+200D"),
    ],
)
def test_invalid_idn_is_a_clear_config_error(name: str, why: str) -> None:
    (problem,) = problems({"domains": [{"domain": name}]})
    assert problem.startswith("domains[0].domain: ")
    assert "internationalized domain name" in problem and why in problem
    (problem,) = problems({"tls": [{"target": f"{name}:25"}]})
    assert problem.startswith("tls[0].target: ") and "internationalized" in problem


async def test_dns_lookups_use_the_a_label(dns_server: DnsServer) -> None:
    dns_server.add_txt(ALABEL, "v=spf1 -all")
    dns_server.add_txt(f"_dmarc.{ALABEL}", f"v=DMARC1; p=reject; rua=mailto:d@{ALABEL}")
    config = parse_config(
        {
            "global": {"nameservers": [dns_server.address], "timeout": "5s", "dnssec": False},
            "domains": [{"domain": "bücher.example"}],
        }
    )
    deps = Runtime(make_resolver([dns_server.address], attempt_timeout=1, lifetime=1), config)
    (target,) = PROBES["dns"].targets(config)
    rec = await run_probe(PROBES["dns"], target, deps)
    assert rec.success, rec.result.error
    assert target.name == ALABEL
    assert (f"_dmarc.{ALABEL}", "TXT") in dns_server.queries
    assert all(name.isascii() for name, _ in dns_server.queries)
