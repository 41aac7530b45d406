"""The ``dns`` probe against a misbehaving DNS server: each fault gives a failed result with the
right reason (never a confident "record missing"), a healthy domain asked at the same time through
the same resolver is unaffected, and hundreds of repetitions leave file descriptors, asyncio
tasks and memory flat."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from faults.dnsfault import FaultDnsServer, many_txt_strings
from faults.leakcheck import repeat_flat

from exporter.config import parse_config
from exporter.findings import CATALOGUE
from exporter.net.dnsclient import make_resolver
from exporter.probes import PROBES
from exporter.results import RunRecord, Target
from exporter.runner import Runtime, run_probe

GOOD = "good.test"
BAD = "bad.test"
ED25519_KEY = base64.b64encode(bytes(range(32))).decode()
SILENT = 0.25
"""Resolver lifetime for faults that never give a usable answer (each question waits this long);
faults that do answer get :data:`ANSWERED`, ample for a loaded test server to reply in."""
ANSWERED = 3.0


def healthy(server: FaultDnsServer, domain: str) -> None:
    server.add_txt(domain, "v=spf1 ip4:192.0.2.0/24 -all")
    server.add_txt(f"_dmarc.{domain}", f"v=DMARC1; p=reject; rua=mailto:dmarc@{domain}")
    server.add_txt(f"s1._domainkey.{domain}", f"v=DKIM1; k=ed25519; p={ED25519_KEY}")
    server.add(domain, "MX", f"10 mx1.{domain}.")
    server.add(f"mx1.{domain}", "A", "192.0.2.25")


BAD_NAMES = (BAD, f"_dmarc.{BAD}", f"s1._domainkey.{BAD}")


@dataclass(frozen=True)
class DnsFault:
    id: str
    apply: Callable[[FaultDnsServer], None]
    reason: str
    """A regex the failed result's error must match."""
    all_names: bool = True
    """The fault hits every record of the bad domain (so no finding at all may be reported)."""
    tcp_refused: bool = False
    lifetime: float = ANSWERED


def _names(kind: str) -> Callable[[FaultDnsServer], None]:
    return lambda s: s.fault(kind, *BAD_NAMES)


def _loop(s: FaultDnsServer) -> None:
    for name in BAD_NAMES:
        s.cname_loop[name] = f"loop.{name}"


def _truncated_then(kind: str) -> Callable[[FaultDnsServer], None]:
    def apply(s: FaultDnsServer) -> None:
        s.fault("always_truncated", *BAD_NAMES)
        if kind:
            s.fault(kind, *BAD_NAMES)

    return apply


def _too_big(s: FaultDnsServer) -> None:
    # ~90 KB of TXT records: more than a DNS message can carry even over TCP.
    for i in range(2200):
        s.add_txt(BAD, f"site-verification={i:032d}")


FAULTS = [
    DnsFault(
        "no_answer",
        _names("timeout"),
        r"SPF: DNS lookup failed: bad\.test TXT: timeout",
        lifetime=SILENT,
    ),
    DnsFault(
        "servfail",
        _names("servfail"),
        r"SPF: DNS lookup failed: bad\.test TXT: (127\.0\.0\.1:\d+: )?SERVFAIL",
    ),
    DnsFault("refused", _names("refused"), r"DMARC: DNS lookup failed: .*REFUSED"),
    DnsFault(
        "malformed_udp", _names("malformed"), r"SPF: DNS lookup failed: .*timeout", lifetime=SILENT
    ),
    DnsFault("malformed_tcp", _truncated_then("malformed"), r"SPF: DNS lookup failed: .*"),
    DnsFault("garbage", _names("garbage"), r"MX: DNS lookup failed: .*timeout", lifetime=SILENT),
    DnsFault(
        "spoofed_id", _names("wrong_id"), r"SPF: DNS lookup failed: .*timeout", lifetime=SILENT
    ),
    DnsFault("cname_loop", _loop, r"DMARC: DNS lookup failed: _dmarc\.bad\.test TXT: "),
    DnsFault(
        "truncated_tcp_closed",
        _truncated_then("tcp_close"),
        r"SPF: .*TXT: (.*TCP: EOF|connection closed)",
    ),
    DnsFault(
        "truncated_tcp_refused",
        _truncated_then(""),
        r"SPF: .*TXT: .*((?i:refused)|Connect call failed)",
        tcp_refused=True,
    ),
    DnsFault(
        "too_big_for_tcp",
        _too_big,
        r"^SPF: DNS lookup failed: bad\.test TXT: (127\.0\.0\.1:\d+: )?truncated answer$",
        all_names=False,
    ),
]


@pytest.fixture
def make_server() -> Iterator[Callable[[bool], FaultDnsServer]]:
    servers: list[FaultDnsServer] = []

    def make(tcp_refused: bool = False) -> FaultDnsServer:
        server = FaultDnsServer(tcp_refused=tcp_refused)
        healthy(server, GOOD)
        healthy(server, BAD)
        servers.append(server.start())
        return server

    yield make
    for server in servers:
        server.stop()


def setup(
    server: FaultDnsServer, lifetime: float = ANSWERED
) -> tuple[Runtime, Runtime, Target, Target]:
    """Deps for the faulted domain (``lifetime``) and for
    the healthy one (the same server, a production-like lifetime: the healthy answers must not
    be held up behind the faulted questions), and the two targets."""
    config = parse_config(
        {
            "global": {"nameservers": [server.address], "timeout": "10s"},
            "domains": [
                {"domain": d, "dkim_selectors": ["s1"], "sending_ips": ["192.0.2.10"]}
                for d in (GOOD, BAD)
            ],
        }
    )
    deps = Runtime(
        make_resolver([server.address], attempt_timeout=lifetime, lifetime=lifetime), config
    )
    good_deps = Runtime(make_resolver([server.address], attempt_timeout=2, lifetime=5), config)
    good, bad = PROBES["dns"].targets(config)
    assert (good.name, bad.name) == (GOOD, BAD)
    return deps, good_deps, good, bad


def assert_healthy(rec: RunRecord) -> None:
    assert rec.result.error is None, rec.result.error
    assert rec.result.findings == []
    values = {s.metric: s.value for s in rec.result.samples if not s.labels[1:]}
    assert values["spf_valid"] == 1
    assert values["dmarc_valid"] == 1
    assert values["mx_valid"] == 1


def assert_could_not_tell(rec: RunRecord, fault: DnsFault) -> None:
    error = rec.result.error
    assert error is not None, "the fault went unnoticed"
    assert re.search(fault.reason, error), error
    # "Could not tell" is never a critical finding (no spf_missing, dmarc_missing, mx_missing...).
    critical = [f.code for f in rec.result.findings if CATALOGUE[f.code].severity == "critical"]
    assert critical == []
    if fault.all_names:
        assert rec.result.findings == []


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
async def test_dns_fault(make_server: Callable[[bool], FaultDnsServer], fault: DnsFault) -> None:
    server = make_server(fault.tcp_refused)
    fault.apply(server)
    deps, good_deps, good, bad = setup(server, fault.lifetime)
    kind = PROBES["dns"]

    good_rec, bad_rec = await asyncio.gather(
        run_probe(kind, good, good_deps), run_probe(kind, bad, deps)
    )
    assert_healthy(good_rec)
    assert_could_not_tell(bad_rec, fault)

    batches = 0

    async def good_once() -> None:
        nonlocal batches
        batches += 1
        assert_healthy(await run_probe(kind, good, good_deps))

    async def bad_once() -> None:
        assert_could_not_tell(await run_probe(kind, bad, deps), fault)

    # 200 faulted runs, 50 at a time, each batch beside a healthy run on the same server.
    async def round_of_50() -> None:
        await asyncio.gather(good_once(), *(bad_once() for _ in range(50)))

    await repeat_flat(round_of_50, warmup=1, repeat=4)
    assert batches == 5


async def test_thousands_of_txt_strings(make_server: Callable[[bool], FaultDnsServer]) -> None:
    """One SPF record made of 3,000 character-strings (56 KB, over TCP): read, parsed, judged."""
    server = make_server(False)
    server.remove(BAD)
    text = many_txt_strings("v=spf1", 3000, " ip6:2001:db8::%x")
    server.add(BAD, "TXT", text[:-1] + ' -all"')
    server.add(BAD, "MX", f"10 mx1.{BAD}.")
    deps, good_deps, good, bad = setup(server)
    good_rec, rec = await asyncio.gather(
        run_probe(PROBES["dns"], good, good_deps), run_probe(PROBES["dns"], bad, deps)
    )
    assert_healthy(good_rec)
    assert rec.result.error is None, rec.result.error
    codes = {f.code: f for f in rec.result.findings}
    assert set(codes) == {"spf_record_long", "spf_ip_not_permitted"}
    assert "56" in codes["spf_record_long"].evidence  # "about 56xxx bytes"
    samples = {(s.metric, s.labels): s.value for s in rec.result.samples}
    assert samples[("spf_valid", (("domain", BAD),))] == 1
    assert samples[("spf_dns_lookups", (("domain", BAD),))] == 0
    assert rec.result.details["spf.result.192.0.2.10"] == f"fail via -all in {BAD}"


async def test_thousands_of_txt_records(make_server: Callable[[bool], FaultDnsServer]) -> None:
    """1,200 unrelated TXT records beside the SPF record (about 59 KB): the one SPF is found."""
    server = make_server(False)
    for i in range(1200):
        server.add_txt(BAD, f"v{i:05d}-verification={i:016x}")
    _, deps, _, bad = setup(server)
    rec = await run_probe(PROBES["dns"], bad, deps)
    assert rec.result.error is None, rec.result.error
    samples = {(s.metric, s.labels): s.value for s in rec.result.samples}
    assert samples[("spf_records", (("domain", BAD),))] == 1
    assert samples[("spf_valid", (("domain", BAD),))] == 1
    assert [f.code for f in rec.result.findings] == ["spf_record_long"]


async def test_oversized_udp_answer(make_server: Callable[[bool], FaultDnsServer]) -> None:
    """A server that ignores the advertised EDNS payload and sends a 13 KB datagram: accepted."""
    server = make_server(False)
    server.fault("oversized_udp", BAD)
    for i in range(60):
        server.add_txt(BAD, f"filler-{i}-" + "y" * 200)
    _, deps, _, bad = setup(server)
    rec = await run_probe(PROBES["dns"], bad, deps)
    assert rec.result.error is None, rec.result.error
    assert [f.code for f in rec.result.findings] == ["spf_record_long"]
    # Answered over UDP alone: the server saw no retry of the TXT question over TCP.
    assert server.queries.count((BAD, "TXT")) == 1
