"""The one place that runs a probe: timing, timeout, success, and catching everything.

:func:`run_probe` wraps every probe run: it gives the probe a fresh per-cycle DNS client, enforces
the hard timeout, measures the duration, checks the samples against :mod:`exporter.metrics` and
the findings against :mod:`exporter.findings`, and turns any exception into a failed result with
a logged reason. Nothing a probe does escapes it (except cancellation of the daemon itself).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dns.asyncresolver

from exporter.config import Config
from exporter.dnsclient import DnsClient, Limiter, SharedDns
from exporter.findings import CATALOGUE
from exporter.metrics import check_sample_labels
from exporter.probes.base import Finding, ProbeContext, ProbeKind, ProbeResult, Target

log = logging.getLogger("exporter.runner")


GC_THRESHOLDS = (25_000, 20, 10)
"""The cyclic garbage collector's thresholds while the daemon runs (CPython's default is
``(700, 10, 10)``). A cycle of 1,000 domains allocates millions of short-lived containers (DNS
answers, rdata, tasks, samples); with the default, about 480 collections ran per cycle, three or
four of them full ones over every live object, and took 0.6-0.9 s of a 1.8 s cycle without DNS
waits. With these, about 9 young-generation collections and no full one: about 0.2 s (bench/
README.md). Garbage without reference cycles is still freed at once by reference counting; only
cyclic garbage waits a little longer (at most 25,000 container allocations)."""


def tune_gc() -> None:
    """Set :data:`GC_THRESHOLDS` and move everything alive at start-up (modules, the config)
    out of the collector's sight with :func:`gc.freeze`, so full collections only walk what the
    runs allocate. Called once by the daemon before the first run (and by the bench)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


T = TypeVar("T")


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


@dataclass(frozen=True)
class RunRecord:
    """The outcome of one run of one target, as the collector and status page see it."""

    target: Target
    result: ProbeResult
    started: float
    finished: float
    duration: float

    @property
    def success(self) -> bool:
        return self.result.error is None


@dataclass
class RunnerDeps:
    """Shared, long-lived dependencies handed to every run."""

    resolver: dns.asyncresolver.Resolver
    config: Config
    dns_max_in_flight: int = 64
    dns_shared: SharedDns | None = None
    """UDP sockets and short-lived answers shared by every run (made from ``resolver``)."""
    max_concurrent_runs: int = 128
    """Runs in progress at once; more wait for a slot, and a run's timeout starts with its slot.
    Keeps the event loop responsive when thousands of targets fall due together (the first
    cycle, a reload), so DNS replies are read before their timers fire."""
    _slots: Limiter | None = field(default=None, repr=False)
    _slots_loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.dns_shared is None:
            self.dns_shared = SharedDns(self.resolver)

    def run_slots(self) -> Limiter:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots = Limiter(self.max_concurrent_runs)
            self._slots_loop = loop
        return self._slots


async def run_probe(kind: ProbeKind, target: Target, deps: RunnerDeps) -> RunRecord:
    """Run one probe once; never raises (but for cancellation of the caller)."""
    plog = logging.getLogger(f"exporter.probe.{target.probe}")
    ctx = ProbeContext(
        dns=DnsClient(deps.resolver, max_in_flight=deps.dns_max_in_flight, shared=deps.dns_shared),
        timeout=target.timeout,
        log=plog,
        config=deps.config,
    )
    slots = deps.run_slots()
    await slots.acquire()
    started = time.time()
    t0 = time.perf_counter()
    if deps.dns_shared is not None:
        deps.dns_shared.acquire()
    try:
        async with asyncio.timeout(target.timeout):  # no task of its own, unlike wait_for
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
        if deps.dns_shared is not None:
            deps.dns_shared.release()
    duration = time.perf_counter() - t0
    result = _validated(result, target)
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


def _validated(result: ProbeResult, target: Target) -> ProbeResult:
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
    )


def effective_severity(finding: Finding) -> str:
    return finding.severity or CATALOGUE[finding.code].severity
