"""The dnsbl probe: answer reading (unit, property) and runs against a real loopback DNS server
serving listed, unlisted, refusing, rewriting and broken zones, for IPv4, IPv6 and domains."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Sequence
from typing import Any

import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rrset
import pytest
from dnsserver import DnsServer
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import exposition
from exporter.config import BlacklistsConfig, ConfigError, parse_config
from exporter.findings import CATALOGUE
from exporter.net.dnsbulk import BulkLookups, encode_name
from exporter.net.dnsclient import make_resolver
from exporter.net.dnsmodel import DnsTempError
from exporter.probes import PROBES
from exporter.probes.dnsbl import DnsblJob, DnsblProbe, TtlCache
from exporter.probes.dnsbl_zones import (
    KNOWN_ZONES,
    NOT_LISTED,
    Verdict,
    ZoneInfo,
    classify,
    judge_self_test,
    query_name,
    reverse_ip,
    zone_info,
)
from exporter.results import RunRecord
from exporter.runner import Runtime, run_probe

IP = "192.0.2.10"
IP_REV = "10.2.0.192"
IP6 = "2001:db8:1:2:3:4:567:89ab"  # the example of RFC 5782 §2.4
IP6_REV = "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2"
DOMAIN = "example.test"


# ----- reading answers (no network) ------------------------------------------------------------


def test_reverse_ip_follows_rfc5782() -> None:
    assert reverse_ip(IP) == IP_REV
    assert reverse_ip(IP6) == IP6_REV
    assert reverse_ip("::ffff:192.0.2.10") == IP_REV  # IPv4-mapped: looked up as IPv4
    assert query_name(IP, "ip", "zen.spamhaus.org") == f"{IP_REV}.zen.spamhaus.org"
    assert (
        query_name("Example.TEST.", "domain", "dbl.spamhaus.org") == "example.test.dbl.spamhaus.org"
    )


@given(st.ip_addresses(v=4))
def test_reverse_ipv4_round_trips(addr: ipaddress.IPv4Address) -> None:
    labels = reverse_ip(str(addr)).split(".")
    assert len(labels) == 4
    assert ".".join(reversed(labels)) == str(addr)


@given(st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None))
def test_reverse_ipv6_is_32_nibbles(addr: ipaddress.IPv6Address) -> None:
    nibbles = reverse_ip(str(addr)).split(".")
    assert len(nibbles) == 32
    assert "".join(reversed(nibbles)) == addr.exploded.replace(":", "")


_LDH = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1,
               max_size=63)  # fmt: skip


@given(st.lists(_LDH, min_size=1, max_size=6))
def test_encode_name_matches_dnspython(labels: list[str]) -> None:
    name = ".".join(labels)
    expected = dns.name.from_text(name.lower()).to_wire()
    if len(expected or b"") > 255:
        with pytest.raises(ValueError):
            encode_name(name)
    else:
        assert encode_name(name) == expected


@pytest.mark.parametrize("bad", ["", "a..b", "é.test", "a b.test", "x" * 64 + ".test"])
def test_encode_name_rejects_what_is_not_a_host_name(bad: str) -> None:
    with pytest.raises(ValueError):
        encode_name(bad)


ZEN = KNOWN_ZONES["zen.spamhaus.org"]
DBL = KNOWN_ZONES["dbl.spamhaus.org"]
URIBL = KNOWN_ZONES["multi.uribl.com"]
GENERIC = ZoneInfo("bl.example.test")


@pytest.mark.parametrize(
    ("zone", "answer", "status", "meaning"),
    [
        (ZEN, [], "not_listed", ""),
        (ZEN, ["127.0.0.2"], "listed", "SBL"),
        (ZEN, ["127.0.0.4", "127.0.0.10"], "listed", "PBL"),
        (ZEN, ["127.255.255.254"], "refused", "public or open resolver"),
        (ZEN, ["127.255.255.255"], "refused", "excessive number of queries"),
        (ZEN, ["127.255.255.252"], "refused", "typing error"),
        (ZEN, ["127.0.0.2", "127.255.255.254"], "refused", "public or open resolver"),
        (ZEN, ["127.0.0.99"], "listed", "unrecognised code"),
        (DBL, ["127.0.1.2"], "listed", "spam domain"),
        (DBL, ["127.0.1.255"], "refused", "IP queries are prohibited"),
        (URIBL, ["127.0.0.6"], "listed", "black, grey"),
        (URIBL, ["127.0.0.1"], "refused", "never a listing"),
        (GENERIC, ["127.0.0.2"], "listed", "listed"),
        (GENERIC, ["127.0.0.1"], "refused", "never a listing"),
        (GENERIC, ["127.255.255.7"], "refused", "error range"),
        (GENERIC, ["198.51.100.7"], "invalid", "rewrites NXDOMAIN"),
        (ZEN, ["127.0.0.2", "10.0.0.1"], "invalid", "outside 127.0.0.0/8"),
    ],
)
def test_classify(zone: ZoneInfo, answer: list[str], status: str, meaning: str) -> None:
    verdict = classify(zone, answer)
    assert verdict.status == status
    assert meaning in verdict.meaning


@given(
    st.lists(st.ip_addresses(v=4).map(str), max_size=4), st.sampled_from([ZEN, DBL, URIBL, GENERIC])
)
def test_error_codes_and_foreign_answers_are_never_listings(
    answer: list[str], zone: ZoneInfo
) -> None:
    verdict = classify(zone, answer)
    if verdict.status == "listed":
        for code in answer:
            addr = ipaddress.IPv4Address(code)
            assert addr in ipaddress.IPv4Network("127.0.0.0/8")
            assert addr not in ipaddress.IPv4Network("127.255.255.0/24")
            assert code != "127.0.0.1"
    if not answer:
        assert verdict == NOT_LISTED


def test_self_test_judgement() -> None:
    listed, refused = Verdict("listed", ("127.0.0.2",)), Verdict("refused", ("127.255.255.254",))
    assert judge_self_test(GENERIC, "ip", listed, NOT_LISTED).status == "healthy"
    assert judge_self_test(GENERIC, "ip", NOT_LISTED, NOT_LISTED).status == "unhealthy"
    everything = judge_self_test(GENERIC, "ip", listed, listed)
    assert everything.status == "unhealthy" and "127.0.0.1" in everything.reason
    assert judge_self_test(GENERIC, "ip", refused, refused).status == "refused"
    rewritten = Verdict("invalid", ("198.51.100.1",), "outside")
    assert judge_self_test(GENERIC, "ip", rewritten, rewritten).status == "unhealthy"


def test_ttl_cache_expires_and_is_bounded() -> None:
    cache: TtlCache[str, int] = TtlCache(2)
    cache.put("a", 1, 60)
    cache.put("b", 2, 60)
    cache.put("c", 3, 60)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, 2, 3)
    cache.put("d", 4, -1)  # already expired; pushes "b" out
    assert cache.get("d") is None
    assert (cache.get("b"), cache.get("c")) == (None, 3)
    assert len(cache) == 1


# ----- config and jobs -------------------------------------------------------------------------


def test_default_zones_are_known_and_active() -> None:
    bl = BlacklistsConfig()
    assert bl.ip_zones == ["zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org"]
    assert bl.domain_zones == ["dbl.spamhaus.org"]
    for name in bl.ip_zones + bl.domain_zones:
        assert name in KNOWN_ZONES
        assert "sorbs" not in name
        assert KNOWN_ZONES[name].delist_url.startswith("https://")


def test_config_zone_definitions_extend_the_built_in_table() -> None:
    config = parse_config(
        {
            "blacklists": {
                "ip_zones": ["zen.spamhaus.org", "custom.example.test", "zen.spamhaus.org"],
                "zones": [
                    {
                        "zone": "custom.example.test",
                        "codes": {"127.0.0.5": "our own list"},
                        "error_codes": {"127.0.0.9": "quota exceeded"},
                        "delist_url": "https://example.test/delist?ip={target}",
                        "test_listed": "127.0.0.5",
                        "test_unlisted": "127.0.0.1",
                    },
                    {"zone": "zen.spamhaus.org", "error_codes": {"127.0.0.200": "local error"}},
                ],
            }
        }
    )
    assert config.blacklists is not None
    assert config.blacklists.ip_zones == ["zen.spamhaus.org", "custom.example.test"]
    custom = {z.zone: z for z in config.blacklists.zones}
    info = zone_info("custom.example.test", custom["custom.example.test"])
    assert classify(info, ["127.0.0.5"]).meaning == "127.0.0.5: our own list"
    assert classify(info, ["127.0.0.9"]).status == "refused"
    assert classify(info, ["127.0.0.6"]).meaning == "127.0.0.6: unrecognised code"
    assert info.ip_test == ("127.0.0.5", "127.0.0.1")
    assert info.delist_hint(IP) == f"https://example.test/delist?ip={IP}"
    zen = zone_info("zen.spamhaus.org", custom["zen.spamhaus.org"])
    assert classify(zen, ["127.0.0.200"]).status == "refused"
    assert classify(zen, ["127.255.255.254"]).status == "refused"  # built-in errors kept
    assert "SBL" in classify(zen, ["127.0.0.2"]).meaning
    no_test = parse_config({"blacklists": {"zones": [{"zone": "x.test", "self_test": False}]}})
    assert no_test.blacklists is not None
    assert zone_info("x.test", no_test.blacklists.zones[0]).ip_test is None


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"zones": [{"zone": "x.test", "codes": {"10.0.0.2": "a"}}]}, "outside 127.0.0.0/8"),
        ({"zones": [{"zone": "x.test", "codes": {"nope": "a"}}]}, "invalid DNSBL return code"),
        ({"zones": [{"zone": "x.test", "test_listed": "127.0.0.2"}]}, "give both"),
        (
            {"zones": [{"zone": "x.test", "test_listed": "127.0.0.2", "test_unlisted": "bad"}]},
            "both be IPs or both names",
        ),
        ({"zones": [{"zone": "x.test", "delist_url": "ftp://x"}]}, "http"),
        ({"zones": [{"zone": "x.test"}, {"zone": "x.test"}]}, "duplicate zone"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"ip_zones": ["not a zone"]}, "ip_zones[0]"),
        ({"sorbs": True}, "unknown key"),
    ],
)
def test_config_errors(section: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"blacklists": section})
    assert problem in "\n".join(err.value.problems)


def test_targets_one_job_per_ip_domain_and_tested_zone() -> None:
    config = parse_config(
        {
            "domains": [
                {"domain": "a.test", "sending_ips": [IP, IP6]},
                {"domain": "b.test", "sending_ips": [IP]},
            ],
            "blacklists": {
                "ip_zones": ["zen.spamhaus.org", "bl.spamcop.net"],
                "domain_zones": ["dbl.spamhaus.org", "untested.test"],
                "zones": [{"zone": "untested.test", "self_test": False}],
                "interval": "10m",
                "timeout": "20s",
            },
        }
    )
    targets = DnsblProbe().targets(config)
    names = [t.name for t in targets]
    assert names == [
        "zen.spamhaus.org",
        "bl.spamcop.net",
        "dbl.spamhaus.org",
        IP,
        IP6,
        "a.test",
        "b.test",
    ]
    assert {t.interval for t in targets} == {600.0}
    assert {t.timeout for t in targets} == {20.0}
    jobs = {t.name: t.settings for t in targets}
    assert isinstance(jobs[IP], DnsblJob)
    assert [z.name for z in jobs[IP].zones] == ["zen.spamhaus.org", "bl.spamcop.net"]
    assert [z.name for z in jobs["a.test"].zones] == ["dbl.spamhaus.org", "untested.test"]
    assert jobs["dbl.spamhaus.org"].kinds == ("domain",)


def test_targets_default_section_and_nothing_to_check() -> None:
    absent = parse_config({"domains": [{"domain": DOMAIN, "sending_ips": [IP]}]})
    assert absent.blacklists is None
    assert PROBES["dnsbl"].targets(absent) == []  # the section enables the probe
    config = parse_config({"domains": [{"domain": DOMAIN, "sending_ips": [IP]}], "blacklists": {}})
    names = {t.name for t in PROBES["dnsbl"].targets(config)}
    assert names == {IP, DOMAIN, "zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org",
                     "dbl.spamhaus.org"}  # fmt: skip
    no_ips = parse_config({"domains": [{"domain": DOMAIN}], "blacklists": {"domain_zones": []}})
    assert PROBES["dnsbl"].targets(no_ips) == []


def test_zone_job_renamed_when_a_monitored_domain_has_its_name() -> None:
    config = parse_config(
        {"domains": [{"domain": "dom.test"}], "blacklists": {"domain_zones": ["dom.test"]}}
    )
    assert sorted(t.name for t in DnsblProbe().targets(config)) == [
        "dom.test",
        "dom.test (self-test)",
    ]


# ----- against a real DNS server ---------------------------------------------------------------


def rev(ip: str) -> str:
    return ".".join(reversed(ip.split(".")))


def healthy_zone(server: DnsServer, zone: str) -> None:
    """A zone that passes the RFC 5782 self-test (and lists nothing else yet)."""
    server.add(f"2.0.0.127.{zone}", "A", "127.0.0.2")
    server.add_txt(f"2.0.0.127.{zone}", "test entry")


def listing(server: DnsServer, name: str, code: str = "127.0.0.2", reason: str = "") -> None:
    server.add(name, "A", code)
    if reason:
        server.add_txt(name, reason)


def config_for(
    server: DnsServer | Sequence[DnsServer],
    *,
    ips: Sequence[str] = (IP,),
    ip_zones: Sequence[str] = (),
    domain_zones: Sequence[str] = (),
    zones: Sequence[dict[str, object]] = (),
    timeout: str = "10s",
) -> dict[str, object]:
    servers = [server] if isinstance(server, DnsServer) else list(server)
    return {
        "global": {"nameservers": [s.address for s in servers], "timeout": timeout},
        "domains": [{"domain": DOMAIN, "sending_ips": list(ips)}],
        "blacklists": {
            "ip_zones": list(ip_zones),
            "domain_zones": list(domain_zones),
            "zones": list(zones),
        },
    }


def runtime_for(raw: dict[str, object], *, lifetime: float = 1.0) -> Runtime:
    """A runtime for a config: what the daemon keeps across the runs of one config."""
    config = parse_config(raw)
    resolver = make_resolver(config.global_.nameservers, attempt_timeout=lifetime / 2,
                             lifetime=lifetime)  # fmt: skip
    return Runtime(resolver, config)


async def run_all(
    probe: DnsblProbe,
    raw: dict[str, object],
    *,
    lifetime: float = 1.0,
    runtime: Runtime | None = None,
) -> dict[str, RunRecord]:
    """Every target once, on ``runtime`` (kept by the caller) or a fresh runtime closed after."""
    rt = runtime or runtime_for(raw, lifetime=lifetime)
    try:
        targets = probe.targets(rt.config)
        records = await asyncio.gather(*(run_probe(probe, t, rt) for t in targets))
    finally:
        if runtime is None:
            await rt.aclose()
    return {r.target.name: r for r in records}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def scrape(records: dict[str, RunRecord]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(exposition(list(records.values()))):
        for s in fam.samples:
            out[(s.name.removeprefix("deliverability_"), tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(series: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float | None:  # fmt: skip
    return series.get((name, tuple(sorted(labels.items()))))


def findings(rec: RunRecord) -> dict[tuple[str, str], str]:
    return {(f.code, f.subject): f.evidence for f in rec.result.findings}


def asked(server: DnsServer, name: str) -> int:
    return sum(1 for qname, _ in server.queries if qname == name)


async def test_listed_and_unlisted_ipv4_through_metrics(dns_server: DnsServer) -> None:
    for zone in ("lista.test", "listb.test"):
        healthy_zone(dns_server, zone)
    listing(dns_server, f"{IP_REV}.lista.test", "127.0.0.2", "Listed for spam, see http://x/")
    raw = config_for(
        dns_server,
        ip_zones=["lista.test", "listb.test"],
        zones=[{"zone": "lista.test", "delist_url": "https://lista.test/remove?ip={target}"}],
    )
    records = await run_all(DnsblProbe(), raw)
    assert set(records) == {IP, "lista.test", "listb.test"}
    series = scrape(records)
    assert metric(series, "dnsbl_listed", target=IP, zone="lista.test") == 1
    assert metric(series, "dnsbl_listed", target=IP, zone="listb.test") == 0
    assert metric(series, "dnsbl_query_success", target=IP, zone="lista.test") == 1
    assert metric(series, "dnsbl_query_success", target=IP, zone="listb.test") == 1
    assert metric(series, "dnsbl_zone_healthy", zone="lista.test") == 1
    assert metric(series, "dnsbl_zone_healthy", zone="listb.test") == 1
    assert metric(series, "probe_success", probe="dnsbl", target=IP) == 1
    assert metric(series, "finding", probe="dnsbl", target=IP, code="ip_listed",
                  severity="critical") == 1  # fmt: skip
    evidence = findings(records[IP])[("ip_listed", "lista.test")]
    assert "Listed for spam, see http://x/" in evidence
    assert f"https://lista.test/remove?ip={IP}" in evidence
    assert records[IP].result.details["listb.test"] == "not listed"
    # The TXT reason is asked only where the IP is listed; each (target, zone) once.
    assert asked(dns_server, f"{IP_REV}.lista.test") == 2  # A, then TXT
    assert asked(dns_server, f"{IP_REV}.listb.test") == 1


async def test_ipv6_nibbles_and_domains(dns_server: DnsServer) -> None:
    healthy_zone(dns_server, "six.test")
    listing(dns_server, f"{IP6_REV}.six.test", "127.0.0.3")
    listing(dns_server, "test.dom.test", "127.0.1.2")  # RFC 5782 TEST entry
    listing(dns_server, f"{DOMAIN}.dom.test", "127.0.1.2", "spammy domain")
    raw = config_for(dns_server, ips=[IP, IP6], ip_zones=["six.test"], domain_zones=["dom.test"])
    records = await run_all(DnsblProbe(), raw)
    series = scrape(records)
    assert metric(series, "dnsbl_listed", target=IP6, zone="six.test") == 1
    assert metric(series, "dnsbl_listed", target=IP, zone="six.test") == 0
    assert metric(series, "dnsbl_listed", target=DOMAIN, zone="dom.test") == 1
    assert metric(series, "dnsbl_zone_healthy", zone="dom.test") == 1
    assert ("ip_listed", "six.test") in findings(records[IP6])
    assert "spammy domain" in findings(records[DOMAIN])[("domain_listed", "dom.test")]
    assert CATALOGUE["domain_listed"].severity == "critical"
    assert all(r.success for r in records.values())


async def test_zone_refusing_this_resolver_is_not_queried(dns_server: DnsServer) -> None:
    # Spamhaus through a public resolver: every answer is 127.255.255.254.
    for name in ("2.0.0.127", "1.0.0.127", IP_REV):
        listing(dns_server, f"{name}.refuse.test", "127.255.255.254")
    healthy_zone(dns_server, "ok.test")
    raw = config_for(
        dns_server,
        ip_zones=["refuse.test", "ok.test"],
        zones=[{"zone": "refuse.test", "error_codes": {"127.255.255.254": "public resolver"}}],
    )
    records = await run_all(DnsblProbe(), raw)
    series = scrape(records)
    assert metric(series, "dnsbl_zone_healthy", zone="refuse.test") == 0
    assert metric(series, "dnsbl_query_success", target=IP, zone="refuse.test") == 0
    assert metric(series, "dnsbl_listed", target=IP, zone="refuse.test") is None
    assert metric(series, "dnsbl_listed", target=IP, zone="ok.test") == 0
    zone_findings = findings(records["refuse.test"])
    assert "public resolver" in zone_findings[("dnsbl_query_refused", "refuse.test")]
    assert CATALOGUE["dnsbl_query_refused"].severity == "warning"
    assert "own recursive resolver" in CATALOGUE["dnsbl_query_refused"].fix
    assert not records["refuse.test"].success
    assert not records[IP].success  # could not tell for one zone
    assert "not queried" in records[IP].result.details["refuse.test"]
    assert all(f.code != "ip_listed" for f in records[IP].result.findings)
    assert asked(dns_server, f"{IP_REV}.refuse.test") == 0


async def test_refusal_of_one_query_is_never_a_listing(dns_server: DnsServer) -> None:
    # The self-test passes, then the list rate-limits this resolver (Spamhaus 127.255.255.255).
    healthy_zone(dns_server, "zen.spamhaus.org")
    listing(dns_server, f"{IP_REV}.zen.spamhaus.org", "127.255.255.255")
    records = await run_all(DnsblProbe(), config_for(dns_server, ip_zones=["zen.spamhaus.org"]))
    series = scrape(records)
    assert metric(series, "dnsbl_zone_healthy", zone="zen.spamhaus.org") == 1
    assert metric(series, "dnsbl_query_success", target=IP, zone="zen.spamhaus.org") == 0
    assert metric(series, "dnsbl_listed", target=IP, zone="zen.spamhaus.org") is None
    evidence = findings(records[IP])[("dnsbl_query_refused", "zen.spamhaus.org")]
    assert "excessive number of queries" in evidence
    assert {f.code for f in records[IP].result.findings} == {"dnsbl_query_refused"}


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ({}, "does not list its test entry 127.0.0.2"),  # shut down: NXDOMAIN for everything
        ({"2.0.0.127": "127.0.0.2", "1.0.0.127": "127.0.0.2"}, "lists 127.0.0.1"),
        ({"2.0.0.127": "198.51.100.1", "1.0.0.127": "198.51.100.1"}, "rewrites NXDOMAIN"),
    ],
)
async def test_unhealthy_zone_answers_are_not_trusted(
    dns_server: DnsServer, entries: dict[str, str], reason: str
) -> None:
    dns_server.add("sibling.bad.test", "A", "127.0.0.2")  # the zone exists
    for name, code in entries.items():
        listing(dns_server, f"{name}.bad.test", code)
    listing(dns_server, f"{IP_REV}.bad.test", "127.0.0.2")  # would read as a listing
    records = await run_all(DnsblProbe(), config_for(dns_server, ip_zones=["bad.test"]))
    series = scrape(records)
    assert metric(series, "dnsbl_zone_healthy", zone="bad.test") == 0
    assert reason in findings(records["bad.test"])[("dnsbl_zone_unhealthy", "bad.test")]
    assert records["bad.test"].success  # the self-test itself completed
    assert metric(series, "dnsbl_listed", target=IP, zone="bad.test") is None
    assert metric(series, "dnsbl_query_success", target=IP, zone="bad.test") == 0
    assert findings(records[IP]) == {}
    assert asked(dns_server, f"{IP_REV}.bad.test") == 0


async def test_answer_outside_loopback_for_a_target_is_flagged(dns_server: DnsServer) -> None:
    healthy_zone(dns_server, "lista.test")
    listing(dns_server, f"{IP_REV}.lista.test", "198.51.100.9")
    records = await run_all(DnsblProbe(), config_for(dns_server, ip_zones=["lista.test"]))
    assert "rewrites NXDOMAIN" in findings(records[IP])[("dnsbl_zone_unhealthy", "lista.test")]
    assert metric(scrape(records), "dnsbl_listed", target=IP, zone="lista.test") is None


async def test_servfail_and_timeout_are_could_not_tell(dns_server: DnsServer) -> None:
    healthy_zone(dns_server, "ok.test")
    listing(dns_server, f"{IP_REV}.ok.test", "127.0.0.2")
    for zone, broken in (("fail.test", dns_server.servfail), ("slow.test", dns_server.timeout)):
        for name in ("2.0.0.127", "1.0.0.127", IP_REV):
            broken.add(f"{name}.{zone}")
    raw = config_for(dns_server, ip_zones=["ok.test", "fail.test", "slow.test"])
    records = await run_all(DnsblProbe(), raw, lifetime=0.6)
    series = scrape(records)
    for zone in ("fail.test", "slow.test"):
        assert metric(series, "dnsbl_query_success", target=IP, zone=zone) == 0
        assert metric(series, "dnsbl_listed", target=IP, zone=zone) is None
        assert metric(series, "dnsbl_zone_healthy", zone=zone) is None
        assert not records[zone].success
        assert findings(records[zone]) == {}
    assert "SERVFAIL" in records[IP].result.details["fail.test"]
    assert "timeout" in records[IP].result.details["slow.test"]
    # Could not tell for two zones, but the listing on the healthy one still shows.
    assert metric(series, "dnsbl_listed", target=IP, zone="ok.test") == 1
    assert not records[IP].success
    assert set(findings(records[IP])) == {("ip_listed", "ok.test")}


async def test_one_query_per_target_and_zone_and_one_self_test(dns_server: DnsServer) -> None:
    ips = [f"192.0.2.{i}" for i in range(1, 41)]
    for zone in ("lista.test", "listb.test"):
        healthy_zone(dns_server, zone)
    probe = DnsblProbe()
    raw = config_for(dns_server, ips=ips, ip_zones=["lista.test", "listb.test"])
    fds = open_fds()
    rt = runtime_for(raw)
    records = await run_all(probe, raw, runtime=rt)
    assert all(r.success for r in records.values())
    for ip in ips:
        for zone in ("lista.test", "listb.test"):
            assert asked(dns_server, f"{rev(ip)}.{zone}") == 1
    # 40 IP jobs and the zone job ran at once: the self-test was asked once per zone.
    assert asked(dns_server, "2.0.0.127.lista.test") == 1
    assert asked(dns_server, "1.0.0.127.lista.test") == 1
    # A second run within half an interval reuses answers; a new config's runtime asks again.
    before = len(dns_server.queries)
    await run_all(probe, raw, runtime=rt)
    zone_jobs_only = len(dns_server.queries) - before
    assert zone_jobs_only == 4  # the zone jobs always re-test: 2 zones x 2 entries
    await rt.aclose()
    await run_all(probe, raw)
    assert asked(dns_server, f"{rev(ips[0])}.lista.test") == 2
    assert open_fds() == fds  # every socket closed with its runtime


async def test_timeouts_are_not_cached(dns_server: DnsServer) -> None:
    healthy_zone(dns_server, "ok.test")
    dns_server.timeout.add(f"{IP_REV}.ok.test")
    probe = DnsblProbe()
    raw = config_for(dns_server, ip_zones=["ok.test"])
    rt = runtime_for(raw, lifetime=0.4)
    first = await run_all(probe, raw, runtime=rt)
    assert not first[IP].success
    dns_server.timeout.clear()
    second = await run_all(probe, raw, runtime=rt)
    await rt.aclose()
    assert second[IP].success
    assert metric(scrape(second), "dnsbl_listed", target=IP, zone="ok.test") == 0


async def test_probe_timeout_leaves_nothing_behind(dns_server: DnsServer) -> None:
    healthy_zone(dns_server, "ok.test")
    dns_server.timeout.add(f"{IP_REV}.ok.test")
    probe = DnsblProbe()
    fds = open_fds()
    records = await run_all(probe, config_for(dns_server, ip_zones=["ok.test"], timeout="300ms"),
                            lifetime=5.0)  # fmt: skip
    assert records[IP].result.error == "timed out after 0.3s"
    await asyncio.sleep(0)  # let the cancelled lookups settle
    assert open_fds() == fds


async def test_long_txt_reason_over_tcp(dns_server: DnsServer) -> None:
    healthy_zone(dns_server, "lista.test")
    reason = "listed because " + "x" * 700  # more than a 512-byte UDP answer holds
    listing(dns_server, f"{IP_REV}.lista.test", "127.0.0.2", reason)
    records = await run_all(DnsblProbe(), config_for(dns_server, ip_zones=["lista.test"]))
    evidence = findings(records[IP])[("ip_listed", "lista.test")]
    assert "listed because xxxx" in evidence
    assert evidence.endswith("…")  # kept short on the status page


# ----- the lookup engine -----------------------------------------------------------------------


async def test_engine_fails_over_to_the_next_nameserver(dns_server: DnsServer) -> None:
    name = f"{IP_REV}.lista.test"
    listing(dns_server, name, "127.0.0.4")
    with DnsServer() as refusing:
        refusing.refused.add(name)
        engine = BulkLookups([("127.0.0.1", refusing.port), ("127.0.0.1", dns_server.port)],
                            attempt_timeout=0.5, lifetime=1.0, max_in_flight=4)  # fmt: skip
        try:
            answer = await asyncio.wait_for(engine.query(name), 5)
        finally:
            engine.close()
    assert answer.addresses() == ["127.0.0.4"]
    assert asked(refusing, name) == 1


async def test_engine_reports_refused_and_unreachable(dns_server: DnsServer) -> None:
    name = f"{IP_REV}.lista.test"
    dns_server.refused.add(name)
    with DnsServer() as stopped:
        dead_port = stopped.port
    engine = BulkLookups([("127.0.0.1", dns_server.port), ("127.0.0.1", dead_port)],
                        attempt_timeout=0.5, lifetime=1.0, max_in_flight=4)  # fmt: skip
    try:
        with pytest.raises(DnsTempError) as err:
            await asyncio.wait_for(engine.query(name), 5)
    finally:
        engine.close()
    assert "REFUSED" in err.value.reason
    assert f"127.0.0.1:{dead_port}" in err.value.reason


async def test_engine_bounds_questions_in_flight(dns_server: DnsServer) -> None:
    names = [f"{i}.slow.test" for i in range(10)]
    dns_server.timeout.update(names)
    engine = BulkLookups([("127.0.0.1", dns_server.port)], attempt_timeout=5.0, lifetime=5.0,
                        max_in_flight=3)  # fmt: skip
    try:
        futures = [engine.query(n) for n in names]
        await asyncio.sleep(0.2)
        assert engine.sent == 3
        assert len(dns_server.queries) == 3
        for fut in futures:
            fut.cancel()
        await asyncio.sleep(0)
        # Withdrawn questions free their slots; nothing more is sent for them.
        assert engine.sent == 3
        answer = await asyncio.wait_for(engine.query("2.0.0.127.nothing.test"), 5)
        assert answer.status == "nxdomain"
    finally:
        engine.close()


class _Forger(asyncio.DatagramProtocol):
    """A nameserver that answers each question first with a reply to another question (same
    ID), then with a reply under another ID, and only then with the genuine NXDOMAIN."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        other = dns.message.make_query("evil.test", "A")
        other.id = query.id
        forged = dns.message.make_response(other)
        forged.answer.append(dns.rrset.from_text("evil.test.", 60, "IN", "A", "127.0.0.2"))
        wrong_id = dns.message.make_response(query)
        wrong_id.id = (query.id + 1) % 65536
        wrong_id.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A",
                                                   "127.0.0.3"))  # fmt: skip
        genuine = dns.message.make_response(query)
        genuine.set_rcode(dns.rcode.NXDOMAIN)
        for reply in (forged, wrong_id, genuine):
            self.transport.sendto(reply.to_wire(), addr)  # type: ignore[attr-defined]


async def test_engine_ignores_replies_to_other_questions() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Forger, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    engine = BulkLookups([("127.0.0.1", port)], attempt_timeout=0.5, lifetime=1.0, max_in_flight=4)
    try:
        answer = await asyncio.wait_for(engine.query(f"{IP_REV}.lista.test"), 5)
    finally:
        engine.close()
        transport.close()
    assert answer.status == "nxdomain"


class _Relay(dns.nameserver.Nameserver):
    """A nameserver that is not plain DNS in dnspython's eyes (as DoT or DoH would be), relaying
    to a Do53 one: the probe must then ask through the run's shared DNS client."""

    def __init__(self, inner: dns.nameserver.Do53Nameserver) -> None:
        super().__init__()
        self.inner = inner

    def __str__(self) -> str:
        return f"relay:{self.inner}"

    def kind(self) -> str:
        return "relay"

    def is_always_max_size(self) -> bool:
        return False

    def answer_nameserver(self) -> str:
        return self.inner.answer_nameserver()

    def answer_port(self) -> int:
        return self.inner.answer_port()

    async def async_query(  # dnspython's signature
        self,
        request: dns.message.QueryMessage,
        timeout: float,  # noqa: ASYNC109
        source: str | None,
        source_port: int,
        max_size: bool,
        backend: Any,
        one_rr_per_rrset: bool = False,
        ignore_trailing: bool = False,
    ) -> dns.message.Message:
        return await self.inner.async_query(
            request, timeout, source, source_port, max_size, backend, one_rr_per_rrset,
            ignore_trailing,
        )  # fmt: skip


async def test_non_plain_dns_nameservers_go_through_the_shared_client(
    dns_server: DnsServer,
) -> None:
    healthy_zone(dns_server, "lista.test")
    listing(dns_server, f"{IP_REV}.lista.test", "127.0.0.2", "relayed reason")
    for name in ("2.0.0.127", "1.0.0.127", IP_REV):
        listing(dns_server, f"{name}.refuse.test", "127.255.255.254")
    config = parse_config(config_for(dns_server, ip_zones=["lista.test", "refuse.test"]))
    resolver = make_resolver(config.global_.nameservers, attempt_timeout=0.5, lifetime=1.0)
    resolver.nameservers = [_Relay(dns.nameserver.Do53Nameserver("127.0.0.1", dns_server.port))]
    deps = Runtime(resolver, config)
    probe = DnsblProbe()
    fds = open_fds()
    records = {r.target.name: r for r in await asyncio.gather(
        *(run_probe(probe, t, deps) for t in probe.targets(config)))}  # fmt: skip
    await deps.aclose()
    series = scrape(records)
    assert metric(series, "dnsbl_listed", target=IP, zone="lista.test") == 1
    assert "relayed reason" in findings(records[IP])[("ip_listed", "lista.test")]
    assert metric(series, "dnsbl_zone_healthy", zone="refuse.test") == 0
    assert metric(series, "dnsbl_query_success", target=IP, zone="refuse.test") == 0
    assert open_fds() == fds


def test_state_kept_from_another_event_loop_is_usable(dns_server: DnsServer) -> None:
    """A runtime may outlive an event loop (tests): a self-test result known from an earlier
    loop mixes with one made in this loop."""
    for zone in ("lista.test", "listb.test"):
        healthy_zone(dns_server, zone)
    probe = DnsblProbe()
    raw = config_for(dns_server, ip_zones=["lista.test", "listb.test"])
    rt = runtime_for(raw)
    only_a = parse_config(config_for(dns_server, ip_zones=["lista.test"]))
    first_targets = probe.targets(only_a)

    async def first_loop() -> list[RunRecord]:
        return list(await asyncio.gather(*(run_probe(probe, t, rt) for t in first_targets)))

    first = {r.target.name: r for r in asyncio.run(first_loop())}
    assert first[IP].success
    (target,) = [t for t in probe.targets(rt.config) if t.name == IP]
    second = asyncio.run(run_probe(probe, target, rt))  # the IP job alone: no fresh zone tests
    assert second.success, second.result.error
    assert asked(dns_server, "2.0.0.127.lista.test") == 1  # known from the first loop
    assert asked(dns_server, "2.0.0.127.listb.test") == 1
