"""What a probe run produces and where the latest results are kept: the one results module.

Probes build :class:`ProbeResult` values (samples by metric name, findings by catalogue code,
evidence for people, tables); the runner wraps each in a :class:`RunRecord`; :class:`State` keeps
the latest record of every target of the current config and a short history. The collector, the
status page and ``check``'s report read only this module (and the catalogues), never the probes
or the runner, so rendering loads no probe and no network code.

A finding's severity is worked out in one place: :func:`severity_of`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from exporter.findings import CATALOGUE

if TYPE_CHECKING:
    from exporter.config import Config

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of a metric declared in :data:`exporter.metrics.METRICS`."""

    metric: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


MAX_LABEL_PAIRS = 1 << 16


class _LabelPairs(dict[tuple[str, str], tuple[str, str]]):
    """Each ``(label, value)`` pair once: every sample labelled ``domain="example.com"`` holds
    the same tuple. A ``dns`` run publishes about 50 samples with 2-3 pairs each: at 1,000
    domains shared pairs keep about 8 MB fewer tuples alive, and fewer new containers mean
    fewer and shorter garbage collections (bench/README.md). Cleared when full (label values
    come from the DNS too): sharing is only an economy."""

    def __missing__(self, pair: tuple[str, str]) -> tuple[str, str]:
        if len(self) >= MAX_LABEL_PAIRS:
            self.clear()
        self[pair] = pair
        return pair


_pair = _LabelPairs().__getitem__


def sample(metric: str, value: float | bool, **labels: str) -> Sample:
    items = tuple(map(_pair, labels.items()))
    return Sample(metric, float(value), items if len(items) < 2 else tuple(sorted(items)))


def state_set(
    metric: str, current: str | None, values: Iterable[str], label: str, **labels: str
) -> list[Sample]:
    """One sample per possible value of a state set, 1 for ``current`` and 0 for the others.

    The same samples as one :func:`sample` call per value, with the other labels sorted once
    rather than once per value (a ``dns`` run makes four state sets, 18 samples)."""
    if label in labels:
        raise TypeError(f"state_set() got multiple values for label {label!r}")
    base = sorted(map(_pair, labels.items()))
    at = sum(1 for name, _ in base if name < label)
    head, tail = tuple(base[:at]), tuple(base[at:])
    return [
        Sample(metric, 1.0 if v == current else 0.0, (*head, _pair((label, v)), *tail))
        for v in values
    ]


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


def severity_of(finding: Finding) -> str:
    """The severity a finding is shown and exported with: its own, else the catalogue's."""
    return finding.severity or CATALOGUE[finding.code].severity


@dataclass(frozen=True)
class Table:
    """A structured section of a result for people: shown as a table on the status page, as
    aligned columns by ``check`` and as rows in its JSON (e.g. a report's failing sources)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""
    """One line under the table (what it covers, why rows are missing)."""


@dataclass
class ProbeResult:
    """What one run of a probe saw. ``error`` None means the probe ran to completion.

    A probe builds its lists and dict as it likes; once it returned them nobody modifies them in
    place (the runner's checks rebind fields to new lists): the state's history and the ``dns``
    probe's memo of its last run (:mod:`exporter.probes.dns.replay`) share them."""

    samples: list[Sample] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None
    details: dict[str, str] = field(default_factory=dict)
    """Evidence for people (record texts, counts), shown on the status page and by ``check``."""
    tables: list[Table] = field(default_factory=list)

    def merge(self, other: ProbeResult) -> None:
        """Fold a sub-check's result into this one; the first error is kept, others appended."""
        self.samples.extend(other.samples)
        self.findings.extend(other.findings)
        self.details.update(other.details)
        self.tables.extend(other.tables)
        if other.error:
            self.error = other.error if self.error is None else f"{self.error}; {other.error}"


@dataclass(frozen=True)
class Target(Generic[S]):
    """One scheduled job: a probe kind applied to one thing with its settings (typed ``S``)."""

    probe: str
    name: str
    settings: S
    interval: float
    timeout: float

    @property
    def key(self) -> tuple[str, str]:
        return (self.probe, self.name)

    @classmethod
    def of(cls, probe: str, name: str, section: S, config: Config) -> Target[S]:
        """A target for one config entry, with its own or the global interval and timeout."""
        return cls(probe, name, section, config.interval_of(section), config.timeout_of(section))


@dataclass(frozen=True)
class RunRecord:
    """The outcome of one run of one target, as the collector and status page see it."""

    target: Target[Any]
    result: ProbeResult
    started: float
    finished: float
    duration: float

    @property
    def success(self) -> bool:
        return self.result.error is None


HISTORY = 20

_CLEAN = ProbeResult()
"""The result of every history entry of a run without findings or error (shared, never modified)."""


@dataclass
class State:
    """The latest results of the targets in the current config, and a short history of each.

    Written by the scheduler's jobs, read by the collector, the status page and ``check``. Only
    targets of the current config are kept: :meth:`set_targets` (called on load and reload)
    drops the records of targets that left the config, so their series disappear from
    ``/metrics``. Everything runs on one event loop, so no locking is needed.
    """

    targets: dict[tuple[str, str], Target[Any]] = field(default_factory=dict)
    latest: dict[tuple[str, str], RunRecord] = field(default_factory=dict)
    history: dict[tuple[str, str], list[RunRecord]] = field(default_factory=dict)
    """The last :data:`HISTORY` runs of each target, oldest first (a list: a deque allocates
    64 slots at once, 0.5 KB per target before its second run)."""
    next_run: dict[tuple[str, str], float] = field(default_factory=dict)
    generation: int = 0
    """Bumped whenever a result or the target set changes (lets readers skip unchanged work)."""

    def set_targets(self, targets: list[Target[Any]]) -> None:
        """Replace the target set; results of targets that stay are kept until their next run
        (even when their settings changed), those of removed targets are dropped."""
        new = {t.key: t for t in targets}
        for key in list(self.latest):
            if key not in new:
                self.latest.pop(key, None)
                self.history.pop(key, None)
                self.next_run.pop(key, None)
        self.targets = new
        self.generation += 1

    def record(self, rec: RunRecord) -> None:
        key = rec.target.key
        if key not in self.targets:
            return  # a run that finished after a reload removed its target
        self.latest[key] = rec
        # History keeps what the status page shows of past runs (state, findings, error), not
        # their samples: at 1,000 domains the full records would cost hundreds of MB. A clean run
        # shares one empty result (about 200 bytes less per entry: 20 x 3,000 entries at 1,000
        # domains); history entries are never modified.
        found, error = rec.result.findings, rec.result.error
        result = _CLEAN if not found and error is None else ProbeResult(findings=found, error=error)
        slim = dataclasses.replace(rec, result=result)
        runs = self.history.get(key)
        if runs is None:
            self.history[key] = [slim]
        else:
            runs.append(slim)
            if len(runs) > HISTORY:
                del runs[0]
        self.generation += 1

    def records(self) -> list[RunRecord]:
        return [self.latest[k] for k in self.targets if k in self.latest]
