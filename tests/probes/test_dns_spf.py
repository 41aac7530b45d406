"""The SPF sub-check through the exporter's exposition (the text served on /metrics).

Each static finding is produced from real DNS data served on loopback, the ``dns`` probe is run
by the real runner, and the assertions read the Prometheus text exposition.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from dnsserver import DnsServer
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import exposition
from exporter.config import parse_config
from exporter.net.dnsclient import make_resolver
from exporter.probes import PROBES
from exporter.results import RunRecord
from exporter.runner import Runtime, run_probe

DOMAIN = "example.test"


@dataclass
class Scrape:
    record: RunRecord
    series: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def value(self, name: str, **labels: str) -> float | None:
        return self.series.get((name, frozenset(labels.items())))

    def spf_findings(self) -> set[str]:
        return {
            dict(labels)["code"]
            for (name, labels), v in self.series.items()
            if name == "deliverability_finding"
            and v == 1
            and dict(labels)["code"].startswith("spf_")
        }

    def evidence(self, code: str) -> str:
        return " | ".join(f.evidence for f in self.record.result.findings if f.code == code)

    def state(self, name: str, label: str, **labels: str) -> str:
        current = [
            dict(lab)[label]
            for (n, lab), v in self.series.items()
            if n == name and v == 1 and all(dict(lab).get(k) == x for k, x in labels.items())
        ]
        assert len(current) == 1, current
        return current[0]


async def scrape(server: DnsServer, sending_ips: list[str] | None = None,
                 lifetime: float = 1.0) -> Scrape:  # fmt: skip
    config = parse_config(
        {
            "global": {"nameservers": [server.address], "timeout": "20s"},
            "domains": [{"domain": DOMAIN, "sending_ips": sending_ips or []}],
        }
    )
    kind = PROBES["dns"]
    (target,) = kind.targets(config)
    resolver = make_resolver([server.address], attempt_timeout=lifetime, lifetime=lifetime)
    record = await run_probe(kind, target, Runtime(resolver, config))
    series: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(exposition([record])):
        for s in family.samples:
            series[(s.name, frozenset(s.labels.items()))] = s.value
    return Scrape(record, series)


def spf(server: DnsServer, text: str, name: str = DOMAIN) -> None:
    server.add_txt(name, text)


async def test_healthy_record(dns_server: DnsServer) -> None:
    spf(dns_server, "v=spf1 mx include:_spf.esp.test ip4:192.0.2.0/24 -all")
    dns_server.add(DOMAIN, "MX", "10 mx.example.test.")
    dns_server.add("mx.example.test", "A", "198.51.100.25")
    spf(dns_server, "v=spf1 include:_s1.esp.test include:_s2.esp.test ~all", "_spf.esp.test")
    spf(dns_server, "v=spf1 ip4:203.0.113.0/25 ~all", "_s1.esp.test")
    spf(dns_server, "v=spf1 ip6:2001:db8::/32 ~all", "_s2.esp.test")
    s = await scrape(dns_server, ["192.0.2.10", "2001:db8::5", "198.51.100.25"])
    d = {"domain": DOMAIN}
    assert s.value("deliverability_probe_success", probe="dns", target=DOMAIN) == 1
    assert s.value("deliverability_spf_records", **d) == 1
    assert s.value("deliverability_spf_valid", **d) == 1
    assert s.value("deliverability_spf_dns_lookups", **d) == 4
    assert s.value("deliverability_spf_void_lookups", **d) == 0
    assert s.state("deliverability_spf_all_qualifier", "qualifier", **d) == "fail"
    for ip in ("192.0.2.10", "2001:db8::5", "198.51.100.25"):
        assert s.state("deliverability_spf_result", "result", ip=ip, **d) == "pass"
    assert s.value("deliverability_dns_record_checksum", record="spf", **d) is not None
    assert s.spf_findings() == set()
    assert "_s2.esp.test" in s.record.result.details["spf.tree"]


async def test_missing(dns_server: DnsServer) -> None:
    dns_server.add_txt(DOMAIN, "google-site-verification=abc")
    s = await scrape(dns_server)
    assert s.value("deliverability_spf_records", domain=DOMAIN) == 0
    assert s.value("deliverability_spf_valid", domain=DOMAIN) == 0
    assert "spf_missing" in s.spf_findings()


async def test_own_txt_timeout_is_not_missing(dns_server: DnsServer) -> None:
    dns_server.timeout.add(DOMAIN)
    s = await scrape(dns_server, lifetime=0.3)
    assert s.value("deliverability_probe_success", probe="dns", target=DOMAIN) == 0
    assert "spf_missing" not in s.spf_findings()
    assert s.value("deliverability_spf_records", domain=DOMAIN) is None


async def test_multiple_records(dns_server: DnsServer) -> None:
    spf(dns_server, "v=spf1 -all")
    spf(dns_server, "v=spf1 include:_spf.esp.test -all")
    s = await scrape(dns_server, ["192.0.2.1"])
    assert s.value("deliverability_spf_records", domain=DOMAIN) == 2
    assert s.value("deliverability_spf_valid", domain=DOMAIN) == 0
    assert {"spf_multiple_records", "spf_ip_not_permitted"} <= s.spf_findings()
    assert s.state("deliverability_spf_result", "result", ip="192.0.2.1") == "permerror"


async def test_syntax_error(dns_server: DnsServer) -> None:
    spf(dns_server, "v=spf1 ip4:192.0.2.300 -all")
    s = await scrape(dns_server)
    assert "spf_syntax_error" in s.spf_findings()
    assert "192.0.2.300" in s.evidence("spf_syntax_error")
    assert s.value("deliverability_spf_valid", domain=DOMAIN) == 0


async def test_strings_joined_without_space(dns_server: DnsServer) -> None:
    dns_server.add(DOMAIN, "TXT", '"v=spf1 ip4:192.0.2.1" "ip4:192.0.2.2 -all"')
    s = await scrape(dns_server)
    assert "spf_strings_joined_wrong" in s.spf_findings()
    assert s.value("deliverability_spf_valid", domain=DOMAIN) == 0


async def test_split_strings_joined_correctly(dns_server: DnsServer) -> None:
    """RFC 7208 §3.3: strings are concatenated with no separator (a split mid-term is fine)."""
    dns_server.add(DOMAIN, "TXT", '"v=spf1 ip4:" "192.0.2.5 -all"')
    s = await scrape(dns_server, ["192.0.2.5"])
    assert s.value("deliverability_spf_valid", domain=DOMAIN) == 1
    assert s.state("deliverability_spf_result", "result", ip="192.0.2.5") == "pass"
    assert s.spf_findings() == set()


def _esp_tree(server: DnsServer, sizes: list[int]) -> str:
    """Includes esp0..espN, each with ``size`` a: terms; returns the include terms."""
    terms = []
    for n, size in enumerate(sizes):
        inner = " ".join(f"a:h{i}.esp{n}.test" for i in range(size))
        for i in range(size):
            server.add(f"h{i}.esp{n}.test", "A", f"203.0.113.{i + 1}")
        spf(server, f"v=spf1 {inner} ~all", f"esp{n}.test")
        terms.append(f"include:esp{n}.test")
    return " ".join(terms)


async def test_too_many_lookups_names_includes_to_flatten(dns_server: DnsServer) -> None:
    spf(dns_server, f"v=spf1 {_esp_tree(dns_server, [4, 3, 1])} -all")
    s = await scrape(dns_server, ["192.0.2.1"])
    assert s.value("deliverability_spf_dns_lookups", domain=DOMAIN) == 11
    assert s.value("deliverability_spf_valid", domain=DOMAIN) == 0
    assert "spf_too_many_lookups" in s.spf_findings()
    evidence = s.evidence("spf_too_many_lookups")
    assert "flatten include:esp0.test (saves 5)" in evidence and "get to 6" in evidence
    assert s.state("deliverability_spf_result", "result", ip="192.0.2.1") == "permerror"


async def test_near_limit(dns_server: DnsServer) -> None:
    spf(dns_server, f"v=spf1 {_esp_tree(dns_server, [4, 3])} -all")
    s = await scrape(dns_server)
    assert s.value("deliverability_spf_dns_lookups", domain=DOMAIN) == 9
    assert s.spf_findings() == {"spf_lookups_near_limit"}


async def test_void_lookups(dns_server: DnsServer) -> None:
    spf(dns_server, "v=spf1 a:gone1.example.test mx:gone2.example.test a:gone3.example.test -all")
    s = await scrape(dns_server)
    assert s.value("deliverability_spf_void_lookups", domain=DOMAIN) == 3
    assert "spf_too_many_void_lookups" in s.spf_findings()
    assert "gone3.example.test" in s.evidence("spf_too_many_void_lookups")


async def test_include_without_spf_and_invalid_include(dns_server: DnsServer) -> None:
    spf(dns_server, "v=spf1 include:nospf.test include:broken.test -all")
    dns_server.add_txt("nospf.test", "hello")
    spf(dns_server, "v=spf1 ip4:1.2.3 -all", "broken.test")
    s = await scrape(dns_server)
    assert {"spf_include_no_spf", "spf_include_invalid"} <= s.spf_findings()
    assert s.value("deliverability_spf_valid", domain=DOMAIN) == 0


async def test_include_loop(dns_server: DnsServer) -> None:
    spf(dns_server, "v=spf1 include:a.loop.test -all")
    spf(dns_server, "v=spf1 include:b.loop.test -all", "a.loop.test")
    spf(dns_server, "v=spf1 include:a.loop.test -all", "b.loop.test")
    s = await scrape(dns_server)
    assert "spf_include_loop" in s.spf_findings()
    assert "a.loop.test -> b.loop.test -> a.loop.test" in s.evidence("spf_include_loop")
    assert s.value("deliverability_spf_dns_lookups", domain=DOMAIN) == 11


async def test_mx_with_too_many_records(dns_server: DnsServer) -> None:
    spf(dns_server, "v=spf1 mx -all")
    for i in range(11):
        dns_server.add(DOMAIN, "MX", f"{i} mx{i}.example.test.")
    s = await scrape(dns_server)
    assert "spf_mx_too_many_records" in s.spf_findings()


async def test_include_timeout_is_a_warning_not_missing(dns_server: DnsServer) -> None:
    spf(dns_server, "v=spf1 include:slow.test ip4:192.0.2.1 -all")
    dns_server.timeout.add("slow.test")
    s = await scrape(dns_server, ["192.0.2.1"], lifetime=0.3)
    findings = s.spf_findings()
    assert "spf_lookup_temperror" in findings and "spf_ip_temperror" in findings
    assert "spf_missing" not in findings and "spf_include_no_spf" not in findings
    assert s.state("deliverability_spf_result", "result", ip="192.0.2.1") == "temperror"


@pytest.mark.parametrize(
    ("record", "qualifier", "code"),
    [
        ("v=spf1 +all", "pass", "spf_all_pass"),
        ("v=spf1 ip4:192.0.2.1 ?all", "neutral", "spf_all_neutral"),
        ("v=spf1 ip4:192.0.2.1", "none", "spf_no_all"),
        ("v=spf1 ip4:192.0.2.1 ~all", "softfail", None),
        ("v=spf1 ip4:192.0.2.1 redirect=r.example.test", "pass", "spf_all_pass"),
    ],
)
async def test_effective_all(
    dns_server: DnsServer, record: str, qualifier: str, code: str | None
) -> None:
    spf(dns_server, record)
    spf(dns_server, "v=spf1 +all", "r.example.test")
    s = await scrape(dns_server)
    assert s.state("deliverability_spf_all_qualifier", "qualifier", domain=DOMAIN) == qualifier
    found = s.spf_findings() & {"spf_all_pass", "spf_all_neutral", "spf_no_all"}
    assert found == ({code} if code else set())


async def test_terms_after_all_and_ignored_redirect(dns_server: DnsServer) -> None:
    spf(dns_server, "v=spf1 -all ip4:192.0.2.1 redirect=r.example.test")
    s = await scrape(dns_server)
    assert "spf_terms_after_all" in s.spf_findings()
    assert s.value("deliverability_spf_dns_lookups", domain=DOMAIN) == 0


async def test_ptr_used(dns_server: DnsServer) -> None:
    spf(dns_server, "v=spf1 ptr:example.test -all")
    s = await scrape(dns_server)
    assert "spf_ptr_used" in s.spf_findings()


async def test_record_long(dns_server: DnsServer) -> None:
    ranges = " ".join(f"ip4:198.51.{i}.0/24" for i in range(24))
    spf(dns_server, f"v=spf1 {ranges} -all")
    s = await scrape(dns_server)
    assert "spf_record_long" in s.spf_findings()
    assert s.value("deliverability_spf_valid", domain=DOMAIN) == 1


async def test_sending_ip_not_permitted(dns_server: DnsServer) -> None:
    spf(dns_server, "v=spf1 ip4:192.0.2.0/24 ~all")
    s = await scrape(dns_server, ["192.0.2.1", "198.51.100.9"])
    assert s.state("deliverability_spf_result", "result", ip="192.0.2.1") == "pass"
    assert s.state("deliverability_spf_result", "result", ip="198.51.100.9") == "softfail"
    assert "spf_ip_not_permitted" in s.spf_findings()
    assert "198.51.100.9" in s.evidence("spf_ip_not_permitted")
    severities = {
        dict(lab)["severity"]
        for (n, lab), v in s.series.items()
        if n == "deliverability_finding" and dict(lab)["code"] == "spf_ip_not_permitted"
    }
    assert severities == {"critical"}


async def test_probe_cycle_queries_each_name_once(dns_server: DnsServer) -> None:
    spf(dns_server, "v=spf1 a mx include:_spf.esp.test include:_spf.esp.test -all")
    dns_server.add(DOMAIN, "A", "192.0.2.1")
    dns_server.add(DOMAIN, "MX", "10 mx.example.test.")
    dns_server.add("mx.example.test", "A", "192.0.2.2")
    spf(dns_server, "v=spf1 ip4:203.0.113.0/24 -all", "_spf.esp.test")
    await scrape(dns_server, ["192.0.2.1", "192.0.2.2", "203.0.113.1", "198.51.100.1"])
    assert len(dns_server.queries) == len(set(dns_server.queries))
