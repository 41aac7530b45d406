"""Turns the latest run records into Prometheus metric families (the only place that does).

A custom ``Collector`` (client_python's recommended pattern): each scrape builds fresh
``GaugeMetricFamily`` objects from the current :class:`~exporter.state.State`, so a target removed
from the config simply disappears. A scrape never triggers network work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.findings import CATALOGUE
from exporter.metrics import EXPORTER_METRICS, METRICS, PREFIX
from exporter.runner import RunRecord


def _family(name: str) -> GaugeMetricFamily:
    spec = EXPORTER_METRICS.get(name) or METRICS[name]
    return GaugeMetricFamily(PREFIX + spec.name, spec.help, labels=list(spec.labels))


def record_families(records: Iterable[RunRecord]) -> list[Metric]:
    """Metric families for a set of run records: probe health, findings and probe samples."""
    success = _family("probe_success")
    duration = _family("probe_duration_seconds")
    last_run = _family("probe_last_run_timestamp_seconds")
    finding = _family("finding")
    families: dict[str, GaugeMetricFamily] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for rec in records:
        t = rec.target
        success.add_metric([t.probe, t.name], 1.0 if rec.success else 0.0)
        duration.add_metric([t.probe, t.name], rec.duration)
        last_run.add_metric([t.probe, t.name], rec.finished)
        for f in rec.result.findings:
            severity = f.severity or CATALOGUE[f.code].severity
            key = (f"finding/{t.probe}/{t.name}/{f.code}", (("severity", severity),))
            if key in seen:
                continue
            seen.add(key)
            finding.add_metric([t.probe, t.name, f.code, severity], 1.0)
        for s in rec.result.samples:
            # Two targets may legitimately publish the same series (e.g. a zone's health);
            # the first one wins rather than producing a duplicate series.
            skey = (s.metric, s.labels)
            if skey in seen:
                continue
            seen.add(skey)
            spec = METRICS[s.metric]
            fam = families.get(s.metric)
            if fam is None:
                fam = families[s.metric] = _family(s.metric)
            labels = dict(s.labels)
            fam.add_metric([labels[name] for name in spec.labels], s.value)
    out: list[Metric] = [success, duration, last_run, finding]
    out.extend(families[name] for name in METRICS if name in families)
    return out


class StateCollector(Collector):
    """Collects the exporter's own health and the latest results from ``records()``."""

    def __init__(
        self,
        records: Callable[[], list[RunRecord]],
        reload_status: Callable[[], tuple[bool, float]],
    ) -> None:
        self._records = records
        self._reload_status = reload_status

    def collect(self) -> Iterator[Metric]:
        build = _family("build_info")
        build.add_metric([__version__], 1.0)
        yield build
        ok, when = self._reload_status()
        reload_ok = _family("config_last_reload_successful")
        reload_ok.add_metric([], 1.0 if ok else 0.0)
        yield reload_ok
        reload_ts = _family("config_last_reload_success_timestamp_seconds")
        reload_ts.add_metric([], when)
        yield reload_ts
        yield from record_families(self._records())


def make_registry(collector: StateCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(records: list[RunRecord]) -> str:
    """The Prometheus text exposition of ``records`` (as served on ``/metrics``)."""
    registry = make_registry(StateCollector(lambda: records, lambda: (True, 0.0)))
    return generate_latest(registry).decode()
