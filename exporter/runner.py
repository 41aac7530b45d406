"""The one place that runs a probe: timing, timeout, success, and catching everything.

:func:`run_probe` wraps every probe run: it gives the probe a fresh per-run DNS client and the
config's :class:`Runtime` (network layer, the kind's resources, the store), enforces the hard
timeout, measures the duration, checks the samples against :mod:`exporter.metrics` and the
findings against :mod:`exporter.findings`, and turns any exception into a failed result with a
logged traceback. Nothing a probe does escapes it (except cancellation of the daemon itself).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import dns.asyncresolver

from exporter import redact
from exporter.config import Config
from exporter.findings import CATALOGUE
from exporter.metrics import check_sample_labels
from exporter.net.dnsclient import make_resolver
from exporter.net.dnsshared import SharedDns
from exporter.net.limiter import Limiter
from exporter.net.network import Network
from exporter.probes.base import ProbeContext, ProbeKind, Resource
from exporter.results import Finding, ProbeResult, RunRecord, Target
from exporter.storage import Store

log = logging.getLogger("exporter.runner")


GC_THRESHOLDS = (200_000, 10, 10)
"""The cyclic garbage collector's thresholds while the daemon runs (CPython's default is
``(700, 10, 10)``). A cycle of 1,000 domains allocates millions of short-lived containers (DNS
answers, rdata, tasks, samples) and holds a few hundred thousand at once while 128 runs are in
flight; each young collection scans all of those still alive, and none of it is cyclic garbage
(``gc.collect()`` after a ``dns`` or ``dnsbl`` cycle with the collector off finds 0 objects).
With the default, about 480 collections ran per cycle (0.6-0.9 s of a 1.8 s cycle); with
``(25_000, 20, 10)`` about 7 young and one middle collection per cycle, 0.11 s of CPU; with these,
one young collection every few cycles: 0.035 s over four cycles, and the cycle's CPU went from
0.71-0.78 s to 0.61-0.65 s (bench/README.md). The daemon's peak RSS at N = 1,000 is the same
(131 MB either way). Garbage without reference cycles is freed at once by reference counting as
always; only cyclic garbage (a failed run's traceback) waits longer, bounded by the threshold."""


def tune_gc() -> None:
    """Set :data:`GC_THRESHOLDS` and move everything alive at start-up (modules, the config)
    out of the collector's sight with :func:`gc.freeze`, so full collections only walk what the
    runs allocate. Called once by the daemon before the first run (and by the bench)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


T = TypeVar("T")
R = TypeVar("R", bound=Resource)


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """:func:`asyncio.run` on uvloop's event loop where uvloop is installed (Linux and macOS:
    a dependency there), else on asyncio's. Every DNS question costs several event-loop
    callbacks (futures, a timer, a reader); on uvloop a cycle of 1,000 domains took 0.3-0.5 s
    less CPU than on asyncio's loop (bench/README.md). The daemon, ``check`` and the
    bench run on it; the tests too (tests/conftest.py)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop wheels
        return asyncio.run(main)
    return uvloop.run(main)


@dataclass
class Runtime:
    r"""What the runs of one loaded config share, made by the daemon (or ``check``) per config.

    It owns the config's network layer (:class:`~exporter.net.network.Network`: resolver, shared
    DNS cache and transport, bulk lookups), each probe kind's resources (made on the kind's first
    run, so a kind with no targets makes none), the run slots, and a reference to the store (which
    outlives configs). A reload makes a new runtime and :meth:`retire`\ s the old one: it is
    closed when the last run that started on it ends. Shutdown awaits :meth:`aclose`.
    """

    resolver: dns.asyncresolver.Resolver
    config: Config
    store: Store | None = None
    dns_max_in_flight: int = 64
    max_concurrent_runs: int = 128
    """Runs in progress at once; more wait for a slot, and a run's timeout starts with its slot.
    Keeps the event loop responsive when thousands of targets fall due together (the first
    cycle, a reload), so DNS replies are read before their timers fire."""
    net: Network = field(init=False)
    _resources: dict[str, Resource] = field(default_factory=dict, init=False, repr=False)
    _slots: Limiter | None = field(default=None, init=False, repr=False)
    _slots_loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    _active: int = field(default=0, init=False, repr=False)
    _retired: bool = field(default=False, init=False, repr=False)
    _closed: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.net = Network(self.resolver, dns_max_in_flight=self.dns_max_in_flight)

    @classmethod
    def for_config(
        cls, config: Config, store: Store | None = None, *, lifetime: float | None = None
    ) -> Runtime:
        """The runtime of a config: its nameservers, a lookup lifetime of at most 5 s (less
        when the probes' default timeout is shorter, or ``lifetime``)."""
        if lifetime is None:
            lifetime = min(5.0, config.global_.timeout)
        resolver = make_resolver(
            config.global_.nameservers, attempt_timeout=min(2.0, lifetime), lifetime=lifetime
        )
        return cls(resolver=resolver, config=config, store=store)

    @property
    def dns_shared(self) -> SharedDns:
        return self.net.shared

    def resources_for(self, kind: ProbeKind[Any, R]) -> R:
        """The kind's resources for this config, made on first use."""
        found = self._resources.get(kind.name)
        if found is None:
            found = self._resources[kind.name] = kind.resources(self.config, self.net)
        return cast(R, found)

    def run_slots(self) -> Limiter:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots = Limiter(self.max_concurrent_runs)
            self._slots_loop = loop
        return self._slots

    def retire(self) -> None:
        """No new runs will start on this runtime: close it once the last run has ended."""
        self._retired = True
        if self._active == 0:
            self._close_soon()

    def _close_soon(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a test): nothing to close asynchronously
            return
        task = loop.create_task(self.aclose())
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)

    async def aclose(self) -> None:
        """Close every kind's resources and the network layer (idempotent)."""
        if self._closed:
            return
        self._closed = True
        resources, self._resources = self._resources, {}
        for name, res in resources.items():
            try:
                await res.aclose()
            except Exception:  # one kind's close must not keep the others open
                log.exception("closing probe resources failed", extra={"probe": name})
        await self.net.aclose()


_CLOSING: set[asyncio.Task[None]] = set()
"""Closes of retired runtimes in progress (a task must be referenced until it is done)."""


async def run_probe(kind: ProbeKind[Any, Any], target: Target[Any], rt: Runtime) -> RunRecord:
    """Run one probe once; never raises (but for cancellation of the caller)."""
    plog = logging.getLogger(f"exporter.probe.{target.probe}")
    slots = rt.run_slots()
    await slots.acquire()
    started = time.time()
    t0 = time.perf_counter()
    rt.net.shared.acquire()
    rt._active += 1
    try:
        async with asyncio.timeout(target.timeout):  # no task of its own, unlike wait_for
            ctx = ProbeContext(
                dns=rt.net.dns_client(),
                net=rt.net,
                timeout=target.timeout,
                log=plog,
                config=rt.config,
                resources=rt.resources_for(kind),
                store=rt.store,
            )
            result = await kind.run(target, ctx)
    except TimeoutError:
        result = ProbeResult(error=f"timed out after {target.timeout:g}s")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the one broad catch: a probe bug must not take the daemon down
        log.exception("probe crashed", extra={"probe": target.probe, "target": target.name})
        result = ProbeResult(error=f"internal error: {type(exc).__name__}: {exc}")
    finally:
        slots.release()
        rt.net.shared.release()
        rt._active -= 1
        if rt._retired and rt._active == 0:
            rt._close_soon()
    duration = time.perf_counter() - t0
    result = _redacted(_validated(result, target))
    if result.error:
        plog.warning(
            "probe failed",
            extra={"probe": target.probe, "target": target.name, "reason": result.error},
        )
    else:
        plog.debug(
            "probe succeeded",
            extra={"probe": target.probe, "target": target.name, "duration": round(duration, 3)},
        )
    return RunRecord(target, result, started, time.time(), duration)


def _redacted(result: ProbeResult) -> ProbeResult:
    """The result without any secret in its text (:mod:`exporter.redact`): every error path of
    every probe ends here, before the state, ``/metrics``, the status page, ``check`` and the
    "probe failed" log line see it. A result with nothing to redact (nearly every one) is
    returned as it is after one check of all its texts together (:func:`redact.clean`)."""
    texts = [result.error or "", *result.details.values()]
    for f in result.findings:
        texts += (f.evidence, f.subject)
    for t in result.tables:
        texts.append(t.note)
        for row in t.rows:
            texts += row
    if redact.clean(texts):
        return result
    r = redact.redact
    if result.error:
        result.error = r(result.error)
    result.findings = [
        dataclasses.replace(f, evidence=r(f.evidence), subject=r(f.subject))
        if f.evidence or f.subject
        else f
        for f in result.findings
    ]
    result.details = {k: r(v) for k, v in result.details.items()}
    result.tables = [
        dataclasses.replace(
            t, rows=tuple(tuple(r(c) for c in row) for row in t.rows), note=r(t.note)
        )
        for t in result.tables
    ]
    return result


def _validated(result: ProbeResult, target: Target[Any]) -> ProbeResult:
    """Drop samples and findings that do not match the declared tables, as a probe error."""
    problems: list[str] = []
    samples = []
    for s in result.samples:
        problem = check_sample_labels(s.metric, tuple([k for k, _ in s.labels]))
        if problem:
            problems.append(problem)
        else:
            samples.append(s)
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for f in result.findings:
        spec = CATALOGUE.get(f.code)
        if spec is None:
            problems.append(f"finding code {f.code!r} is not in the catalogue")
            continue
        key = (f.code, f.subject)
        if key not in seen:
            seen.add(key)
            findings.append(f)
    if not problems:
        result.findings = findings
        return result
    for p in problems:
        log.error("probe bug: %s", p, extra={"probe": target.probe, "target": target.name})
    error = "internal error: " + "; ".join(dict.fromkeys(problems))
    return ProbeResult(
        samples=samples,
        findings=findings,
        error=error if result.error is None else f"{result.error}; {error}",
        details=result.details,
        tables=result.tables,
    )
