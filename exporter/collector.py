"""Turns the latest run records into Prometheus metric families (the only place that does).

A custom ``Collector`` (client_python's recommended pattern): each scrape builds fresh
``GaugeMetricFamily`` objects from the current :class:`~exporter.state.State`, so a target removed
from the config simply disappears. A scrape never triggers network work.

``/metrics`` is served by :meth:`StateCollector.exposition`, which gives the same bytes as
``generate_latest`` but formats each run record only once: the text of a record's samples is
kept until that target's next run, and a scrape only lists the kept fragments (and returns the
previous list when nothing changed). With 1,000 domains (about 40,000 series) this turns a
scrape from about a second of CPU into tens of milliseconds. The daemon writes the listed parts
to the socket a chunk at a time (:meth:`StateCollector.exposition_parts`): the body is never
joined in memory (5.4 MB at 1,000 domains, and as much again in the transport's buffer when the
scraper reads slowly).
"""

from __future__ import annotations

import weakref
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _untyped_go_float

from exporter import __version__
from exporter.metrics import EXPORTER_METRICS, METRICS
from exporter.results import RunRecord, severity_of


def _family(name: str) -> GaugeMetricFamily | CounterMetricFamily:
    spec = EXPORTER_METRICS.get(name) or METRICS[name]
    if spec.kind == "counter":
        return CounterMetricFamily(spec.family, spec.help, labels=list(spec.labels))
    return GaugeMetricFamily(spec.family, spec.help, labels=list(spec.labels))


def record_families(records: Iterable[RunRecord]) -> list[Metric]:
    """Metric families for a set of run records: probe health, findings and probe samples."""
    success = _family("probe_success")
    duration = _family("probe_duration_seconds")
    last_run = _family("probe_last_run_timestamp_seconds")
    finding = _family("finding")
    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for rec in records:
        t = rec.target
        success.add_metric([t.probe, t.name], 1.0 if rec.success else 0.0)
        duration.add_metric([t.probe, t.name], rec.duration)
        last_run.add_metric([t.probe, t.name], rec.finished)
        for f in rec.result.findings:
            severity = severity_of(f)
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


RECORD_FAMILIES = ("probe_success", "probe_duration_seconds", "probe_last_run_timestamp_seconds")
"""Families every record has exactly one sample in (one per target: never duplicated)."""
_ALWAYS = (*RECORD_FAMILIES, "finding")


class _Families(Collector):
    """A collector over a given list of families (to format them with ``generate_latest``)."""

    def __init__(self, families: Sequence[Metric] = ()) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


class _Fragment:
    """One record's series as ``generate_latest`` writes them: per family the lines (bytes) and
    the hashes of the series keys, and a weak reference to the record they were made from.

    Compact because the daemon keeps one per target (about 64,000 series at 1,000 domains): the
    family names are one dict shared by every record with the same families (:attr:`index`),
    the hashes one array per record (family ``i``'s are ``hashes[ends[i - 1]:ends[i]]``), the
    lines one bytes object per family. Hashes rather than the keys keep the cache at about the
    size of the text itself; a hash seen twice is checked against the real keys before a series
    is dropped. The earlier layout (a dict of family name to (array, str) per record, a new
    name string each) held 2.4 times the text's size (bench/README.md)."""

    __slots__ = ("ends", "hashes", "index", "record", "texts")

    def __init__(
        self,
        record: weakref.ref[RunRecord],
        index: dict[str, int],
        texts: tuple[bytes, ...],
        hashes: array[int],
        ends: array[int],
    ) -> None:
        self.record = record
        self.index = index
        self.texts = texts
        self.hashes = hashes
        self.ends = ends

    def series_hashes(self, i: int) -> array[int]:
        return self.hashes[self.ends[i - 1] if i else 0 : self.ends[i]]


MAX_SHAPES = 1024
"""Distinct family sets kept (records of one kind share a few; a bound, not a limit)."""


class Exposition:
    """Renders run records as ``generate_latest`` would, formatting each record only once.

    The records are held by weak reference only: a record replaced by its target's next run is
    freed at once, not kept (with all its samples) until the next scrape.
    """

    def __init__(self) -> None:
        self._fragments: dict[tuple[str, str], _Fragment] = {}
        self._shapes: dict[tuple[str, ...], dict[str, int]] = {}
        self._headers: dict[str, bytes] = {}
        self._last: tuple[list[weakref.ref[RunRecord]], bytes, list[bytes]] | None = None

    def _format(self, rec: RunRecord) -> _Fragment:
        """Each family's series as ``generate_latest`` writes gauges whose metric and label
        names are valid legacy names (all of ours: :mod:`exporter.metrics` checks them)."""
        names: list[str] = []
        texts: list[bytes] = []
        hashes = array("q")
        ends = array("I")
        for family in record_families([rec]):
            lines: list[str] = []
            for s in family.samples:
                key = s.name
                if s.labels:
                    key += (
                        "{"
                        + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()))
                        + "}"
                    )
                hashes.append(hash(key))
                lines.append(f"{key} {_go_float(s.value)}\n")
            if lines:
                names.append(family.name)
                texts.append("".join(lines).encode())
                ends.append(len(hashes))
        shape = tuple(names)
        index = self._shapes.get(shape)
        if index is None:
            if len(self._shapes) >= MAX_SHAPES:
                self._shapes.clear()
            index = self._shapes[shape] = {name: i for i, name in enumerate(shape)}
        return _Fragment(weakref.ref(rec), index, tuple(texts), hashes, ends)

    def _fragment(self, rec: RunRecord) -> _Fragment:
        kept = self._fragments.get(rec.target.key)
        if kept is not None and kept.record() is rec:
            return kept
        fragment = self._fragments[rec.target.key] = self._format(rec)
        return fragment

    def render(self, head: Sequence[Metric], records: Sequence[RunRecord]) -> bytes:
        """``head`` families (formatted on every call) followed by ``records``' families."""
        return b"".join(self.render_parts(head, records))

    def render_parts(self, head: Sequence[Metric], records: Sequence[RunRecord]) -> list[bytes]:
        """:meth:`render`'s body as a list of parts (mostly the kept fragments themselves, not
        copies); the same list object while nothing changed. Do not modify it."""
        head_text = generate_latest(_registry_of(head))
        last = self._last
        if (
            last is not None
            and last[1] == head_text
            and len(last[0]) == len(records)
            and all(ref() is r for ref, r in zip(last[0], records, strict=True))
        ):
            return last[2]
        self._last = None  # the previous parts are freed before the next ones are listed
        fragments = [self._fragment(r) for r in records]
        live = {r.target.key for r in records}
        for gone in [k for k in self._fragments if k not in live]:
            del self._fragments[gone]
        if not self._headers:
            self._headers = _headers()
        parts: list[bytes] = [head_text]
        names = [n for n in METRICS if n not in _ALWAYS]
        for name in (*_ALWAYS, *names):
            family = (EXPORTER_METRICS.get(name) or METRICS[name]).family
            lines: list[bytes] = []
            dedupe = name not in RECORD_FAMILIES
            seen: set[int] = set()
            keys: set[str] | None = None
            for fragment in fragments:
                i = fragment.index.get(family)
                if i is None:
                    continue
                joined = fragment.texts[i]
                if not dedupe:
                    lines.append(joined)
                    continue
                hashes = fragment.series_hashes(i)
                if seen.isdisjoint(hashes):
                    seen.update(hashes)
                    lines.append(joined)
                else:
                    # The same series from two records: the first one wins, as in
                    # record_families(). Compare the real keys (a hash may collide).
                    if keys is None:
                        keys = {_key(line) for text in lines for line in _lines(text.decode())}
                    for line in _lines(joined.decode()):
                        key = _key(line)
                        if key not in keys:
                            keys.add(key)
                            seen.add(hash(key))
                            lines.append(line.encode())
                    continue
                if keys is not None:
                    keys.update(_key(line) for line in _lines(joined.decode()))
            if lines or name in _ALWAYS:
                parts.append(self._headers[family])
                parts.extend(lines)
        self._last = ([weakref.ref(r) for r in records], head_text, parts)
        return parts


METRICS_CHUNK = 256 * 1024
"""Bytes per write of ``/metrics``: parts are joined up to this size (a fragment is a few KB),
so a 5 MB body is some twenty writes, each waiting until the socket takes the previous one."""


def chunks(parts: Sequence[bytes], size: int) -> Iterator[bytes]:
    """``parts`` in order, joined into pieces of at least ``size`` bytes (the last may be less;
    a part longer than ``size`` goes alone and whole)."""
    pending: list[bytes] = []
    pending_size = 0
    for part in parts:
        pending.append(part)
        pending_size += len(part)
        if pending_size >= size:
            yield pending[0] if len(pending) == 1 else b"".join(pending)
            pending = []
            pending_size = 0
    if pending:
        yield b"".join(pending)


_go_float = cast(Callable[[float], str], _untyped_go_float)
"""prometheus_client's float formatting (``1.0``, ``+Inf``, ``NaN``), typed."""


def _lines(text: str) -> list[str]:
    """The lines of exposition text, each with its newline. Only ``\\n`` ends a line: label
    values escape it, but may hold the other characters ``str.splitlines`` breaks at
    (``\\r``, ``\\x1e``, ``\\x85``: a label value with one crashed the renderer)."""
    return [line + "\n" for line in text.split("\n")[:-1]]


def _key(line: str) -> str:
    """The series of an exposition line: all but the value."""
    return line[: line.rindex(" ")]


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _headers() -> dict[str, bytes]:
    """The ``# HELP`` and ``# TYPE`` lines of every family, as ``generate_latest`` writes them,
    by family name (a counter's ``TYPE`` line names it with its ``_total`` suffix)."""
    out: dict[str, bytes] = {}
    for name in (*EXPORTER_METRICS, *METRICS):
        family = _family(name)
        out[family.name] = generate_latest(_registry_of([family]))
    return out


def _registry_of(families: Sequence[Metric]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return registry


class StateCollector(Collector):
    """Collects the exporter's own health and the latest results from ``records()``."""

    def __init__(
        self,
        records: Callable[[], list[RunRecord]],
        reload_status: Callable[[], tuple[bool, float]],
    ) -> None:
        self._records = records
        self._reload_status = reload_status
        self._exposition = Exposition()

    def exposition(self) -> bytes:
        """The text exposition of :meth:`collect`, byte for byte, from kept fragments."""
        return b"".join(self.exposition_parts())

    def exposition_parts(self) -> list[bytes]:
        """:meth:`exposition` in parts, to be written out in order (not modified)."""
        return self._exposition.render_parts(list(self._head()), self._records())

    def collect(self) -> Iterator[Metric]:
        yield from self._head()
        yield from record_families(self._records())

    def _head(self) -> Iterator[Metric]:
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


def make_registry(collector: StateCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(records: list[RunRecord]) -> str:
    """The Prometheus text exposition of ``records`` (as served on ``/metrics``)."""
    return StateCollector(lambda: records, lambda: (True, 0.0)).exposition().decode()
