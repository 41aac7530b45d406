"""The ``dns`` probe's memory of each domain's last run (exporter/probes/dns/replay.py).

A run whose answers are all the same as last time returns exactly what a full run returns; any
other run (a changed record, however deep in the SPF tree, a DNS failure, the SPF time macro,
a new config) is a full run. Every comparison here is with a full run of a fresh runtime
against the same servers at the same moment."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from dnssec_lab import DnssecLab
from dnsserver import DnsServer
from hypothesis import given
from hypothesis import strategies as st

from exporter.config import Config, parse_config
from exporter.demo import start_lab
from exporter.net.dnsmodel import DnsAnswer
from exporter.probes import PROBES
from exporter.probes.dns import replay
from exporter.probes.dns.common import DnsResources
from exporter.results import RunRecord
from exporter.runner import Runtime, run_probe

DNS = PROBES["dns"]


async def cycle(rt: Runtime) -> dict[str, RunRecord]:
    """One cycle of every domain, as the daemon's next cycle finds the DNS (nothing shared)."""
    rt.net.shared.forget()
    recs = await asyncio.gather(*(run_probe(DNS, t, rt) for t in DNS.targets(rt.config)))
    return {r.target.name: r for r in recs}


async def full(config: Config) -> dict[str, RunRecord]:
    """The same cycle on a runtime of its own: nothing remembered, every run a full one."""
    rt = Runtime.for_config(config)
    try:
        return await cycle(rt)
    finally:
        await rt.aclose()


def seen(rec: RunRecord) -> tuple[Any, ...]:
    r = rec.result
    return (r.samples, r.findings, r.error, r.details, r.tables)


def memo(rt: Runtime) -> replay.Replays:
    resources = rt.resources_for(DNS)
    assert isinstance(resources, DnsResources) and resources.replays is not None
    return resources.replays


def value(rec: RunRecord, metric: str, **labels: str) -> float | None:
    for s in rec.result.samples:
        got = dict(s.labels)
        if s.metric == metric and all(got.get(k) == v for k, v in labels.items()):
            return s.value
    return None


@pytest.fixture
async def runtime(dns_server: DnsServer) -> AsyncIterator[Runtime]:
    """One domain with SPF (an include two levels down), DMARC, DKIM, MX and FCrDNS, served
    in zone order (a server that rotates record sets is its own test)."""
    dns_server.shuffle = False
    dns_server.add_txt("example.test", "v=spf1 include:_spf.esp.test -all")
    dns_server.add_txt("_spf.esp.test", "v=spf1 include:_ip4.esp.test ~all")
    dns_server.add_txt("_ip4.esp.test", "v=spf1 ip4:192.0.2.0/24 -all")
    dns_server.add_txt("_dmarc.example.test", "v=DMARC1; p=reject; rua=mailto:d@example.test")
    dns_server.add_txt("s1._domainkey.example.test", "v=DKIM1; k=ed25519; p=" + "A" * 43 + "=")
    dns_server.add("example.test", "MX", "10 mx1.example.test.")
    dns_server.add("example.test", "MX", "20 mx2.example.test.")
    dns_server.add("mx1.example.test", "A", "192.0.2.25")
    dns_server.add("mx2.example.test", "A", "192.0.2.26")
    dns_server.add("1.2.0.192.in-addr.arpa", "PTR", "out.example.test.")
    dns_server.add("out.example.test", "A", "192.0.2.1")
    config = parse_config(
        {"global": {"nameservers": [dns_server.address], "dnssec": False, "timeout": "10s"},
         "domains": [{"domain": "example.test", "dkim_selectors": ["s1"],
                      "sending_ips": ["192.0.2.1"]}]}
    )  # fmt: skip
    rt = Runtime.for_config(config)
    try:
        yield rt
    finally:
        await rt.aclose()


async def test_unchanged_answers_return_the_full_runs_result(
    runtime: Runtime, dns_server: DnsServer
) -> None:
    first = (await cycle(runtime))["example.test"]
    assert first.success, first.result.error
    kept = memo(runtime).get("example.test")
    assert kept is not None
    asked = {(a.name, a.rdtype) for a in kept.answers}
    assert ("_ip4.esp.test", "TXT") in asked and ("1.2.0.192.in-addr.arpa", "PTR") in asked
    dns_server.queries.clear()
    again = (await cycle(runtime))["example.test"]
    assert memo(runtime).get("example.test") is kept  # replayed, not judged again
    # ... yet every question went to the server again, each once.
    assert sorted(dns_server.queries) == sorted(asked)
    assert seen(again) == seen(first) == seen((await full(runtime.config))["example.test"])
    # An object of its own (the runner rebinds fields), the lists kept once in memory.
    assert again.result is not first.result and again.result.samples is first.result.samples


async def test_a_change_deep_in_the_spf_tree_is_judged_again(
    runtime: Runtime, dns_server: DnsServer
) -> None:
    first = (await cycle(runtime))["example.test"]
    spf_pass = {"domain": "example.test", "ip": "192.0.2.1", "result": "pass"}
    assert value(first, "spf_result", **spf_pass) == 1
    kept = memo(runtime).get("example.test")
    dns_server.remove("_ip4.esp.test")
    dns_server.add_txt("_ip4.esp.test", "v=spf1 ip4:198.51.100.0/24 -all")
    changed = (await cycle(runtime))["example.test"]
    assert value(changed, "spf_result", **spf_pass) == 0
    assert value(changed, "spf_result", **{**spf_pass, "result": "fail"}) == 1
    assert seen(changed) == seen((await full(runtime.config))["example.test"])
    assert memo(runtime).get("example.test") is not kept
    # The new answers are kept in turn: the next cycle replays them.
    kept = memo(runtime).get("example.test")
    assert seen((await cycle(runtime))["example.test"]) == seen(changed)
    assert memo(runtime).get("example.test") is kept


async def test_a_new_mx_host_is_asked_for(runtime: Runtime, dns_server: DnsServer) -> None:
    """A changed answer leads to a question the last run never asked (the new host's A)."""
    await cycle(runtime)
    dns_server.add("example.test", "MX", "30 mx3.example.test.")
    dns_server.add("mx3.example.test", "A", "192.0.2.27")
    rec = (await cycle(runtime))["example.test"]
    assert value(rec, "mx_records", domain="example.test") == 3
    assert seen(rec) == seen((await full(runtime.config))["example.test"])
    kept = memo(runtime).get("example.test")
    assert kept is not None and ("mx3.example.test", "A") in {
        (a.name, a.rdtype) for a in kept.answers
    }


async def test_a_dns_failure_is_a_full_run_and_is_not_kept(
    runtime: Runtime, dns_server: DnsServer
) -> None:
    await cycle(runtime)
    assert memo(runtime).get("example.test") is not None
    dns_server.servfail.add("_spf.esp.test")
    failed = (await cycle(runtime))["example.test"]
    # RFC 7208: an include that cannot be looked up makes check_host() a temperror.
    temperror = {"domain": "example.test", "ip": "192.0.2.1", "result": "temperror"}
    assert value(failed, "spf_result", **temperror) == 1
    assert seen(failed) == seen((await full(runtime.config))["example.test"])
    assert memo(runtime).get("example.test") is None
    # Still failing: a full run each time, never kept.
    assert seen((await cycle(runtime))["example.test"]) == seen(failed)
    assert memo(runtime).get("example.test") is None
    dns_server.servfail.clear()
    healed = (await cycle(runtime))["example.test"]
    assert value(healed, "spf_result", **temperror) == 0
    assert memo(runtime).get("example.test") is not None
    # A failure the run reports as its error (DMARC could not be looked up).
    dns_server.timeout.add("_dmarc.example.test")
    failed = (await cycle(runtime))["example.test"]
    assert not failed.success and "_dmarc.example.test" in (failed.result.error or "")
    assert seen(failed) == seen((await full(runtime.config))["example.test"])
    assert memo(runtime).get("example.test") is None


async def test_the_spf_time_macro_is_never_kept(runtime: Runtime, dns_server: DnsServer) -> None:
    """%{t} (allowed only in an explanation, RFC 7208 section 7.2) is the time of the check."""
    dns_server.remove("example.test")
    dns_server.add_txt("example.test", "v=spf1 ip4:198.51.100.1 -all exp=why.example.test")
    dns_server.add_txt("why.example.test", "%{i} may not send for %{d} (checked at %{t})")
    rec = (await cycle(runtime))["example.test"]
    assert value(rec, "spf_result", domain="example.test", ip="192.0.2.1", result="fail") == 1
    assert ("why.example.test", "TXT") in dns_server.queries
    assert memo(runtime).get("example.test") is None
    # Without the macro the same record is kept.
    dns_server.remove("why.example.test")
    dns_server.add_txt("why.example.test", "%{i} may not send for %{d}")
    await cycle(runtime)
    assert memo(runtime).get("example.test") is not None


async def test_rotated_record_sets_are_judged_again_and_agree(dns_server: DnsServer) -> None:
    """A server that rotates its record sets (dnsserver's default, as many do): the order
    differs, so the run is a full one; what it publishes is the same either way."""
    for i in range(6):
        dns_server.add("rr.test", "MX", f"{10 + i} mx{i}.rr.test.")
        dns_server.add(f"mx{i}.rr.test", "A", f"192.0.2.{30 + i}")
    dns_server.add_txt("rr.test", "v=spf1 mx -all")
    dns_server.add_txt("_dmarc.rr.test", "v=DMARC1; p=none")
    config = parse_config(
        {"global": {"nameservers": [dns_server.address], "dnssec": False},
         "domains": [{"domain": "rr.test", "sending_ips": ["192.0.2.33"]}]}
    )  # fmt: skip
    rt = Runtime.for_config(config)
    runs, replaced = [], []
    try:
        for _ in range(4):
            before = memo(rt).get("rr.test")
            runs.append((await cycle(rt))["rr.test"])
            replaced.append(memo(rt).get("rr.test") is not before)
    finally:
        await rt.aclose()
    # Six MX records in a new order each time: the same order in three runs running is a
    # chance of 1 in 720**3. Each run judged again keeps its own answers.
    assert sum(replaced[1:]) >= 1, replaced
    reference = seen((await full(config))["rr.test"])
    assert all(seen(r) == reference for r in runs)


async def test_the_demo_lab_replayed_is_the_full_run(tmp_path: Path) -> None:
    """Every sample domain of the offline demo (signed zones with DNSSEC validated, DANE, a
    return-path domain, a baseline, a broken domain, a public-suffix tree walk)."""
    lab = await start_lab(tmp_path)
    rt = Runtime.for_config(lab.config())
    try:
        first = await cycle(rt)
        kept = {name: memo(rt).get(name) for name in first}
        assert all(k is not None for k in kept.values()), kept
        second = await cycle(rt)
        fresh = await full(rt.config)
        for name, rec in second.items():
            assert seen(rec) == seen(fresh[name]) == seen(first[name]), name
        assert all(memo(rt).get(name) is kept[name] for name in first)
        other = Runtime.for_config(rt.config)  # a reload: a new config, nothing remembered
        assert len(memo(other)) == 0
        await other.aclose()
    finally:
        await rt.aclose()
        await lab.stop()


class _Clock:
    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset


async def test_dnssec_is_judged_every_run(
    dnssec_lab: DnssecLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """expiring.test's signatures lapse in about five days: the warning becomes critical when
    the clock moves three days on, though no answer changed; the rest is replayed."""
    config = parse_config(
        {"global": {"nameservers": [dnssec_lab.address],
                    "dnssec_trust_anchors": str(dnssec_lab.anchor_file)},
         "domains": [{"domain": "expiring.test",
                      "expect": {"dnssec": "secure"}}]}
    )  # fmt: skip
    rt = Runtime.for_config(config)
    try:
        first = (await cycle(rt))["expiring.test"]
        (warning,) = [f for f in first.result.findings if f.code == "dnssec_signature_expiring"]
        assert warning.severity is None
        kept = memo(rt).get("expiring.test")
        assert kept is not None
        assert seen((await cycle(rt))["expiring.test"]) == seen(first)
        assert memo(rt).get("expiring.test") is kept
        monkeypatch.setattr("exporter.probes.dns.dnssec.time", _Clock(3 * 86400))
        later = (await cycle(rt))["expiring.test"]
        (lapsing,) = [f for f in later.result.findings if f.code == "dnssec_signature_expiring"]
        assert lapsing.severity == "critical"
        assert seen(later) == seen((await full(config))["expiring.test"])
        now_kept = memo(rt).get("expiring.test")
        assert now_kept is not None and now_kept is not kept
        # The sub-checks' result was not worked out again: the very same samples.
        old, new = kept.pure().samples, now_kept.pure().samples
        assert old and len(new) == len(old) and all(a is b for a, b in zip(new, old, strict=True))
    finally:
        await rt.aclose()


# ----- what "the same answer" is ---------------------------------------------------------------

TEXTS = st.lists(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
                 max_size=4)  # fmt: skip


def txt_answer(texts: list[str], canonical: str = "") -> DnsAnswer:
    rdatas = tuple(
        dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, '"' + _escaped(t) + '"')
        for t in texts
    )
    return DnsAnswer("x.test", "TXT", "ok" if rdatas else "nodata", rdatas, canonical)


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


@given(TEXTS, TEXTS)
def test_same_is_equal_records_in_order(a: list[str], b: list[str]) -> None:
    assert replay.same(txt_answer(a), txt_answer(b)) == (a == b)


@given(TEXTS)
def test_same_sees_status_and_cname(a: list[str]) -> None:
    assert replay.same(txt_answer(a), txt_answer(a))
    assert not replay.same(txt_answer(a), txt_answer(a, canonical="y.test"))
    assert not replay.same(txt_answer([]), DnsAnswer("x.test", "TXT", "nxdomain"))


def test_case_counts() -> None:
    assert not replay.same(txt_answer(["v=spf1 A -all"]), txt_answer(["v=spf1 a -all"]))


def answer(rdtype: str, *texts: str) -> DnsAnswer:
    kind = dns.rdatatype.from_text(rdtype)
    rdatas = tuple(dns.rdata.from_text(dns.rdataclass.IN, kind, t) for t in texts)
    return DnsAnswer("x.test", rdtype, "ok", rdatas)


@pytest.mark.parametrize(
    ("rdtype", "old", "new", "equal"),
    [
        ("A", "192.0.2.1", "192.0.2.1", True),
        ("A", "192.0.2.1", "192.0.2.2", False),
        ("AAAA", "2001:db8::1", "2001:db8:0::1", True),  # the same address, written otherwise
        ("AAAA", "2001:db8::1", "2001:db8::2", False),
        ("MX", "10 mx.x.test.", "10 mx.x.test.", True),
        ("MX", "10 mx.x.test.", "20 mx.x.test.", False),
        ("MX", "10 mx.x.test.", "10 MX.x.test.", False),  # case counts: the details show it
        ("CNAME", "a.x.test.", "a.x.test.", True),
        ("CNAME", "a.x.test.", "b.x.test.", False),
        ("PTR", "out.x.test.", "Out.x.test.", False),
        ("CAA", '0 issue "ca.test"', '0 issue "ca.test"', True),  # by its text
        ("CAA", '0 issue "ca.test"', '0 issue "other.test"', False),
    ],
)
def test_same_record_by_type(rdtype: str, old: str, new: str, equal: bool) -> None:
    assert replay.same(answer(rdtype, old), answer(rdtype, new)) is equal


def test_same_needs_the_same_records_in_the_same_order() -> None:
    one, two = "192.0.2.1", "192.0.2.2"
    assert replay.same(answer("A", one, two), answer("A", one, two))
    assert not replay.same(answer("A", one, two), answer("A", two, one))
    assert not replay.same(answer("A", one, two), answer("A", one))
