"""What every probe shares: its target, its context, and the result it reports.

A probe kind is an object with a ``name``, a ``targets(config)`` method that expands the config
into targets, and an async ``run(target, ctx)`` that returns a :class:`ProbeResult`. Probes never
import prometheus_client: they return :class:`Sample` values by metric name (declared in
:mod:`exporter.metrics`) and :class:`Finding` values by code (declared in
:mod:`exporter.findings`); the runner and the collector do the rest.

A probe reports trouble as data: ``ProbeResult.error`` set (``probe_success 0``) and findings.
Exceptions that escape are turned into an error by the runner, but a probe should not rely on it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from exporter.dnsclient import DnsClient

if TYPE_CHECKING:
    from exporter.config import Config


@dataclass(frozen=True, slots=True)
class Sample:
    """One gauge value of a metric declared in :data:`exporter.metrics.METRICS`."""

    metric: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


def sample(metric: str, value: float | bool, **labels: str) -> Sample:
    items = tuple(labels.items())
    return Sample(metric, float(value), items if len(items) < 2 else tuple(sorted(items)))


def state_set(
    metric: str, current: str | None, values: Iterable[str], label: str, **labels: str
) -> list[Sample]:
    """One sample per possible value of a state set, 1 for ``current`` and 0 for the others."""
    return [sample(metric, v == current, **{label: v}, **labels) for v in values]


@dataclass(frozen=True)
class Finding:
    """An active finding: a catalogue code plus what was seen (``evidence``).

    ``severity`` overrides the catalogue's default when one condition has two levels (a
    certificate expiring in 20 days is a warning, in 5 days critical).
    ``subject`` names the part of the target it concerns (a selector, an IP, an MX host).
    """

    code: str
    evidence: str = ""
    subject: str = ""
    severity: str | None = None


@dataclass
class ProbeResult:
    """What one run of a probe saw. ``error`` None means the probe ran to completion."""

    samples: list[Sample] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None
    details: dict[str, str] = field(default_factory=dict)
    """Evidence for people (record texts, counts), shown on the status page and by ``check``."""

    def merge(self, other: ProbeResult) -> None:
        """Fold a sub-check's result into this one; the first error is kept, others appended."""
        self.samples.extend(other.samples)
        self.findings.extend(other.findings)
        self.details.update(other.details)
        if other.error:
            self.error = other.error if self.error is None else f"{self.error}; {other.error}"


@dataclass(frozen=True)
class Target:
    """One scheduled job: a probe kind applied to one thing with its settings."""

    probe: str
    name: str
    settings: Any
    interval: float
    timeout: float

    @property
    def key(self) -> tuple[str, str]:
        return (self.probe, self.name)

    @classmethod
    def of(cls, probe: str, name: str, section: Any, config: Config) -> Target:
        """A target for one config entry, with its own or the global interval and timeout."""
        return cls(probe, name, section, config.interval_of(section), config.timeout_of(section))


@dataclass
class ProbeContext:
    """What the runner hands a probe: a fresh per-cycle DNS client, its timeout, a logger."""

    dns: DnsClient
    timeout: float
    log: logging.Logger
    config: Config


class ProbeKind(Protocol):
    """A kind of probe, registered in :data:`exporter.probes.PROBES`."""

    name: str

    def targets(self, config: Config) -> list[Target]: ...

    async def run(self, target: Target, ctx: ProbeContext) -> ProbeResult: ...
