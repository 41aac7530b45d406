"""The fast ``/metrics`` renderer gives exactly ``generate_latest``'s bytes, and reuses work."""

from __future__ import annotations

import gc
import weakref

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest

from exporter.collector import StateCollector, chunks, make_registry
from exporter.results import Finding, ProbeResult, RunRecord, Target, sample, state_set


def _record(probe: str, name: str, value: float, *, error: str | None = None) -> RunRecord:
    result = ProbeResult(
        samples=[
            sample("spf_records", value, domain=name),
            *state_set("dmarc_policy", "reject", ("none", "quarantine", "reject"), "policy",
                       domain=name),
            # The same series from two targets: the first record wins.
            sample("dnsbl_zone_healthy", 1.0, zone="bl.example"),
            sample("dkim_key_bits", 2048, domain=name, selector='we"ird\\sel\nx'),
            # A counter (named with _total; its family without): served from the store.
            sample("reports_invalid_total", value, target=name),
        ],
        findings=[Finding("dmarc_policy_none"), Finding("spf_missing", severity="warning")],
        error=error,
    )  # fmt: skip
    target = Target(probe, name, None, 60.0, 10.0)
    return RunRecord(target, result, 1000.0, 1000.5 + value, 0.5)


def test_exposition_equals_generate_latest_and_follows_changes() -> None:
    records = [_record("dns", "a.example", 1), _record("dns", "b example", 2, error="boom")]
    status = {"ok": True}
    collector = StateCollector(lambda: records, lambda: (status["ok"], 123.0))
    registry = make_registry(collector)
    assert collector.exposition() == generate_latest(registry)
    first = collector.exposition()
    parts = collector.exposition_parts()
    assert collector.exposition_parts() is parts  # nothing changed: the same parts
    assert b"".join(parts) == first

    records[1] = _record("dns", "b example", 3)  # a new run of one target
    records.append(_record("dnsbl", "192.0.2.1", 4))
    body = collector.exposition()
    assert body != first
    assert body == generate_latest(registry)
    status["ok"] = False  # the head families are always fresh
    assert collector.exposition() == generate_latest(registry)

    del records[0]  # a target left the config: its series go
    body = collector.exposition()
    assert body == generate_latest(registry)
    assert b'domain="a.example"' not in body

    records.clear()
    assert collector.exposition() == generate_latest(registry)


def test_replaced_records_are_not_kept_until_the_next_scrape() -> None:
    """The renderer's cache holds records weakly: a replaced run is freed before any scrape, and
    a new record (even one at the address of a freed one) is never mistaken for the old one."""
    records = [_record("dns", "a.example", 1), _record("dns", "b.example", 2)]
    collector = StateCollector(lambda: records, lambda: (True, 123.0))
    registry = make_registry(collector)
    first = collector.exposition()
    old = weakref.ref(records[0])
    for value in range(3, 40):  # many replacements: freed addresses get reused
        records[0] = _record("dns", "a.example", value)
        gc.collect()
        assert old() is None  # not held by the cache
        old = weakref.ref(records[0])
        body = collector.exposition()
        assert body == generate_latest(registry)
        assert f'deliverability_spf_records{{domain="a.example"}} {value}.0'.encode() in body
    assert body != first


@given(st.lists(st.text(max_size=6), min_size=1, max_size=5), st.integers(0, 4))
def test_any_label_text_renders_as_generate_latest(names: list[str], shared: int) -> None:
    """Label values of any text (non-ASCII, line and form feeds, quotes), and the same series
    from several records (``shared`` of them publish one zone's health)."""
    records = []
    for i, name in enumerate(names):
        samples = [sample("spf_records", i, domain=name), sample("mx_valid", 1, domain=name)]
        if i < shared:
            samples.append(sample("dnsbl_zone_healthy", i, zone=names[0]))
        target = Target("dns", f"{i}:{name}", None, 60.0, 10.0)
        records.append(RunRecord(target, ProbeResult(samples=samples), 1.0, 2.0, 1.0))
    collector = StateCollector(lambda: records, lambda: (True, 1.0))
    assert collector.exposition() == generate_latest(make_registry(collector))


@given(st.lists(st.binary(max_size=40), max_size=30), st.integers(1, 100))
def test_chunks_keep_every_byte_in_order(parts: list[bytes], size: int) -> None:
    """``/metrics`` is written in these chunks: the same bytes, each chunk but the last at least
    ``size``, and none longer than needed to reach it (``size`` plus one part)."""
    out = list(chunks(parts, size))
    assert b"".join(out) == b"".join(parts)
    assert all(len(c) >= size for c in out[:-1])
    longest = max((len(p) for p in parts), default=0)
    assert all(len(c) < size + longest or len(c) == longest for c in out)
