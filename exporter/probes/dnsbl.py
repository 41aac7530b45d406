"""The ``dnsbl`` probe: sending IPs and monitored domains against DNS blacklists.

Jobs (one :class:`~exporter.probes.base.Target` each, so each has its own ``probe_success``):

* one per sending IP (``domains[].sending_ips``, each IP once), checked against every
  ``blacklists.ip_zones`` zone — target name: the IP;
* one per monitored domain (``domains[].domain``) against every ``blacklists.domain_zones``
  zone — target name: the domain;
* one per zone in use that has self-test entries — target name: the zone — running the RFC 5782
  self-test (127.0.0.2 listed, 127.0.0.1 not; ``TEST``/``INVALID`` for domain lists) and
  publishing ``dnsbl_zone_healthy{zone}`` and the zone's own findings.

An IP or domain job publishes ``dnsbl_query_success{target,zone}`` for every zone and
``dnsbl_listed{target,zone}`` where the zone answered meaningfully, with ``ip_listed`` /
``domain_listed`` findings (the list's reason from its TXT record, fetched only when listed, and
its delisting page) and ``dnsbl_query_refused`` / ``dnsbl_zone_unhealthy`` when the answer is an
error code or not an address in 127.0.0.0/8. How answers read is in
:mod:`exporter.probes.dnsbl_zones`.

Trust: before reading a zone's answers a job needs the zone's health. A zone that failed its
self-test or refuses this resolver is not queried at all (its answers would not be trusted, and
the list is spared the load): ``dnsbl_query_success`` is 0 and the zone's job carries the finding.
When the self-test could not complete (timeout), answers are read as they come.

Rate-friendly by construction, with state kept in the per-config resources
(:class:`DnsblState`, made by the runtime and dropped on reload) and bounded:

* each job asks each zone once per run; all runs share the config's bulk lookups (a few UDP
  sockets, :meth:`exporter.net.network.Network.bulk_lookups`) with ``blacklists.max_in_flight``
  questions in flight over all jobs together;
* a zone's self-test result is shared by all jobs for half an interval, and concurrent jobs that
  need it wait for the one test in flight instead of repeating it;
* definite answers (listed / not listed, with the TXT reason) are reused for half an interval, so
  extra runs (a reload, the first run after start) do not query the lists again, while the
  regular runs, an interval apart, always ask afresh. Errors and timeouts are never cached.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from exporter.config import Config
from exporter.net.dnsmodel import DnsAnswer, DnsTempError
from exporter.net.network import Ask, Network
from exporter.probes.base import ProbeContext
from exporter.probes.dnsbl_zones import (
    HEALTH_UNTESTED,
    Verdict,
    ZoneHealth,
    ZoneInfo,
    ZoneKind,
    classify,
    judge_self_test,
    query_label,
    test_query_names,
    zone_info,
)
from exporter.results import Finding, ProbeResult, Sample, Target, sample

Role = Literal["ip", "domain", "zone"]

CACHE_ENTRIES = 65536
"""Most (target, zone) answers kept between runs: 8,000 for 1,000 IPs on 8 zones."""
_REASON_MAX = 300


@dataclass(frozen=True)
class DnsblJob:
    """A target's settings: what to check (``value``, an IP, domain or zone) on which zones."""

    role: Role
    value: str
    zones: tuple[ZoneInfo, ...]
    kinds: tuple[ZoneKind, ...] = ()
    """For a zone job: the self-tests to run (``ip``, ``domain``)."""
    max_in_flight: int = 64
    label: str = ""
    """What precedes the zone in a query name (the reversed IP or the domain)."""

    @property
    def kind(self) -> ZoneKind:
        return "domain" if self.role == "domain" else "ip"


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A bounded map whose entries expire; the oldest entries go first when it is full."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] <= time.monotonic():
            del self._data[key]
            return None
        return item[1]

    def put(self, key: K, value: V, ttl: float) -> None:
        self._data[key] = (time.monotonic() + ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


@dataclass
class _HealthEntry:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[ZoneHealth]
    expires: float = math.inf
    task: asyncio.Task[None] | None = None


@dataclass
class _Outcome:
    success: bool
    listed: bool | None
    detail: str
    finding: Finding | None = None


class DnsblState:
    """What the blacklist probe keeps across the runs of one config (made by the runtime,
    closed on reload and shutdown): definite answers for half an interval, each zone's
    self-test result, and the bulk lookups of the config's network layer."""

    def __init__(self, net: Network, *, max_in_flight: int, cache_entries: int = CACHE_ENTRIES):
        self.net = net
        self.max_in_flight = max_in_flight
        self.answers: TtlCache[str, tuple[Verdict, str]] = TtlCache(cache_entries)
        self._healths: OrderedDict[tuple[str, ZoneKind, str], _HealthEntry] = OrderedDict()

    def lookups(self) -> Ask:
        """Ask over the network layer's shared UDP sockets, ``max_in_flight`` at most."""
        return self.net.bulk_lookups(self.max_in_flight)

    def health(
        self, zone: ZoneInfo, kind: ZoneKind, ttl: float, *, fresh: bool = False
    ) -> asyncio.Future[ZoneHealth]:
        """The zone's self-test result: reused for ``ttl`` seconds (unless ``fresh``); while a
        test is under way every run waits for that one. The test runs in its own task, so a run
        that gives up (its timeout) does not take it down for the others."""
        loop = asyncio.get_running_loop()
        names = test_query_names(zone, kind)
        if names is None:
            done: asyncio.Future[ZoneHealth] = loop.create_future()
            done.set_result(HEALTH_UNTESTED)
            return done
        key = (zone.name, kind, names[0])
        entry = self._healths.get(key)
        if entry is not None:
            fut = entry.future
            if fut.done():
                if not fresh and not fut.cancelled() and entry.expires > time.monotonic():
                    if entry.loop is loop:
                        return fut
                    known: asyncio.Future[ZoneHealth] = loop.create_future()
                    known.set_result(fut.result())  # a result from another event loop
                    return known
            elif entry.loop is loop:
                return asyncio.shield(fut)
        entry = _HealthEntry(loop, loop.create_future())
        self._healths[key] = entry
        self._healths.move_to_end(key)
        while len(self._healths) > 1024:
            self._healths.popitem(last=False)
        entry.task = loop.create_task(self._self_test(zone, kind, names, entry, ttl))
        return asyncio.shield(entry.future)

    async def _self_test(
        self,
        zone: ZoneInfo,
        kind: ZoneKind,
        names: tuple[str, str],
        entry: _HealthEntry,
        ttl: float,
    ) -> None:
        try:
            ask = self.lookups()
            listed, unlisted = await asyncio.gather(
                ask(names[0], "A"), ask(names[1], "A"), return_exceptions=True
            )
            failures = [str(a) for a in (listed, unlisted) if isinstance(a, BaseException)]
            if failures:
                health = ZoneHealth("unknown", "; ".join(failures))
            else:
                assert isinstance(listed, DnsAnswer) and isinstance(unlisted, DnsAnswer)
                health = judge_self_test(
                    zone,
                    kind,
                    classify(zone, listed.addresses()),
                    classify(zone, unlisted.addresses()),
                )
            entry.expires = time.monotonic() + ttl
            entry.future.set_result(health)
        finally:
            if not entry.future.done():
                entry.future.cancel()

    async def aclose(self) -> None:
        """Stop self-tests still running (their runs are gone with the config)."""
        healths, self._healths = self._healths, OrderedDict()
        for entry in healths.values():
            if entry.task is not None and not entry.task.done():
                entry.task.cancel()


class DnsblProbe:
    name = "dnsbl"

    def __init__(self, *, cache_entries: int = CACHE_ENTRIES) -> None:
        self.cache_entries = cache_entries

    # ----- jobs -------------------------------------------------------------------------------
    def targets(self, config: Config) -> list[Target[DnsblJob]]:
        bl = config.blacklists
        if bl is None:  # the probe is enabled by the section (``blacklists: {}`` = defaults)
            return []
        custom = {z.zone: z for z in bl.zones}
        ip_zones = tuple(zone_info(n, custom.get(n)) for n in bl.ip_zones)
        domain_zones = tuple(zone_info(n, custom.get(n)) for n in bl.domain_zones)
        ips = list(dict.fromkeys(ip for d in config.domains for ip in d.sending_ips))
        domains = [d.domain for d in config.domains]
        interval, timeout = config.interval_of(bl), config.timeout_of(bl)

        jobs: list[DnsblJob] = []
        kinds: dict[str, list[ZoneKind]] = {}
        infos: dict[str, ZoneInfo] = {}
        plan: list[tuple[tuple[ZoneInfo, ...], ZoneKind, list[str]]] = [
            (ip_zones, "ip", ips),
            (domain_zones, "domain", domains),
        ]
        for zones, kind, values in plan:
            if not values:
                continue
            for z in zones:
                if z.self_test(kind) is not None:
                    kinds.setdefault(z.name, []).append(kind)
                    infos[z.name] = z
        for name, zone_kinds in kinds.items():
            jobs.append(DnsblJob("zone", name, (infos[name],), tuple(zone_kinds), bl.max_in_flight))
        if ip_zones:
            jobs += [
                DnsblJob("ip", ip, ip_zones, (), bl.max_in_flight, query_label(ip, "ip"))
                for ip in ips
            ]
        if domain_zones:
            jobs += [
                DnsblJob("domain", d, domain_zones, (), bl.max_in_flight, query_label(d, "domain"))
                for d in domains
            ]

        taken = {j.value for j in jobs if j.role != "zone"}
        return [
            Target(
                probe=self.name,
                # A zone job is named after its zone, unless a monitored domain has that name.
                name=f"{j.value} (self-test)" if j.role == "zone" and j.value in taken else j.value,
                settings=j,
                interval=interval,
                timeout=timeout,
            )
            for j in jobs
        ]

    # ----- runs -------------------------------------------------------------------------------
    def resources(self, config: Config, net: Network) -> DnsblState:
        bl = config.blacklists
        max_in_flight = bl.max_in_flight if bl is not None else 64
        return DnsblState(net, max_in_flight=max_in_flight, cache_entries=self.cache_entries)

    async def run(self, target: Target[DnsblJob], ctx: ProbeContext[DnsblState]) -> ProbeResult:
        job = target.settings
        ttl = target.interval / 2
        state = ctx.resources
        if job.role == "zone":
            return await _run_zone(job, state, ttl)
        return await _run_target(job, state, ttl)


async def _run_target(job: DnsblJob, state: DnsblState, ttl: float) -> ProbeResult:
    # Futures all the way down (no task per zone): 8,000 lookups a cycle stay cheap.
    pending = [state.health(zone, job.kind, ttl) for zone in job.zones]
    if all(f.done() for f in pending):  # the usual case: known for the interval
        healths = [f.result() for f in pending]
    else:
        healths = await asyncio.gather(*pending)
    ask = state.lookups()
    label = job.label or query_label(job.value, job.kind)
    qnames = [f"{label}.{zone.name}" for zone in job.zones]
    verdicts: list[tuple[Verdict, str] | str | None] = [None] * len(job.zones)
    asked: dict[int, asyncio.Future[DnsAnswer]] = {}
    for i, (health, qname) in enumerate(zip(healths, qnames, strict=True)):
        if not health.usable:
            verdicts[i] = f"not queried: {health.reason}"
        elif (cached := state.answers.get(qname)) is not None:
            verdicts[i] = cached
        else:
            asked[i] = ask(qname, "A")
    answers = await asyncio.gather(*asked.values(), return_exceptions=True)
    listed: dict[int, Verdict] = {}
    for i, answer in zip(asked, answers, strict=True):
        if isinstance(answer, DnsTempError):
            verdicts[i] = f"could not tell: {answer.reason}"
        elif isinstance(answer, BaseException):
            raise answer
        else:
            verdict = classify(job.zones[i], answer.addresses())
            verdicts[i] = (verdict, "")
            if verdict.status == "listed":
                listed[i] = verdict
    if listed:  # the list's own explanation, only for listings
        reasons = await asyncio.gather(
            *(ask(qnames[i], "TXT") for i in listed), return_exceptions=True
        )
        for i, txt in zip(listed, reasons, strict=True):
            verdicts[i] = (listed[i], _reason_text(txt))
    for i in asked:
        entry = verdicts[i]
        if isinstance(entry, tuple) and entry[0].answered:
            state.answers.put(qnames[i], entry, ttl)

    result = ProbeResult()
    problems: list[str] = []
    for zone, health, entry in zip(job.zones, healths, verdicts, strict=True):
        if isinstance(entry, tuple):
            out = _outcome(job, zone, entry[0], entry[1], health)
        else:
            out = _Outcome(False, None, entry or "not queried")
        labels = (("target", job.value), ("zone", zone.name))  # sorted, as sample() makes
        result.samples.append(Sample("dnsbl_query_success", float(out.success), labels))
        if out.listed is not None:
            result.samples.append(Sample("dnsbl_listed", float(out.listed), labels))
        if out.finding is not None:
            result.findings.append(out.finding)
        result.details[zone.name] = out.detail
        if not out.success:
            problems.append(f"{zone.name}: {out.detail}")
    if problems:
        result.error = "; ".join(problems)
    return result


async def _run_zone(job: DnsblJob, state: DnsblState, ttl: float) -> ProbeResult:
    zone = job.zones[0]
    healths: list[ZoneHealth] = await asyncio.gather(
        *(state.health(zone, kind, ttl, fresh=True) for kind in job.kinds)
    )
    result = ProbeResult()
    for kind, health in zip(job.kinds, healths, strict=True):
        names = test_query_names(zone, kind) or ("", "")
        text = f"{health.status}: {health.reason}" if health.reason else health.status
        result.details[f"{kind} self-test"] = f"{text} (asked {names[0]} and {names[1]})"
    statuses = {h.status for h in healths}
    reasons = "; ".join(dict.fromkeys(h.reason for h in healths if h.status != "healthy"))
    advice = f" {zone.note}." if zone.note else ""
    if "refused" in statuses:
        result.samples.append(sample("dnsbl_zone_healthy", 0, zone=zone.name))
        result.findings.append(
            Finding("dnsbl_query_refused", f"{zone.name}: {reasons}.{advice}", zone.name)
        )
        result.error = f"{zone.name} refuses this resolver's queries"
    elif "unhealthy" in statuses:
        result.samples.append(sample("dnsbl_zone_healthy", 0, zone=zone.name))
        result.findings.append(
            Finding("dnsbl_zone_unhealthy", f"{zone.name}: {reasons}.", zone.name)
        )
    elif "unknown" in statuses:
        result.error = f"self-test of {zone.name} could not complete: {reasons}"
    else:
        result.samples.append(sample("dnsbl_zone_healthy", 1, zone=zone.name))
    return result


def _outcome(
    job: DnsblJob, zone: ZoneInfo, verdict: Verdict, reason: str, health: ZoneHealth
) -> _Outcome:
    if verdict.status == "not_listed":
        return _Outcome(True, False, "not listed")
    if verdict.status == "listed":
        hint = zone.delist_hint(job.value)
        text = f"listed ({verdict.meaning})"
        if reason:
            text += f"; reason: {reason}"
        if hint:
            text += f"; delist: {hint}"
        if health.status == "unknown":
            text += "; the zone's self-test could not complete"
        code = "ip_listed" if job.role == "ip" else "domain_listed"
        return _Outcome(True, True, text, Finding(code, f"{zone.name}: {text}", zone.name))
    if verdict.status == "refused":
        text = f"refused: {verdict.meaning}"
        evidence = f"{zone.name}: {verdict.meaning}." + (f" {zone.note}." if zone.note else "")
        return _Outcome(False, None, text, Finding("dnsbl_query_refused", evidence, zone.name))
    text = f"invalid answer: {verdict.meaning}"
    return _Outcome(
        False, None, text, Finding("dnsbl_zone_unhealthy", f"{zone.name}: {text}", zone.name)
    )


def _reason_text(answer: DnsAnswer | BaseException) -> str:
    """The list's TXT explanation of a listing ('' when it publishes none or cannot tell)."""
    if isinstance(answer, BaseException):
        if isinstance(answer, DnsTempError):
            return ""
        raise answer
    text = " ".join(t.strip() for t in answer.texts() if t.strip())
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 1] + "…"


PROBE = DnsblProbe()
