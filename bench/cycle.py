"""One measured probe cycle, run in its own process so that its peak RSS and CPU are its own.

``python -m bench.cycle CONFIG --knot-control SOCKET [--kinds dns,dnsbl,tls]`` loads the config
exactly as the daemon does, builds the daemon's runtime
(:meth:`exporter.runner.Runtime.for_config`), then for each probe kind in turn starts every
target at once through :func:`exporter.runner.run_probe` (the daemon's first cycle, without
the start-up jitter) and records wall time, CPU seconds and the queries knot answered. Finally
it renders ``/metrics`` from all the records with the collector the daemon serves. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from bench.knot import queries
from exporter.collector import StateCollector, make_registry
from exporter.config import load_config
from exporter.probes import PROBES
from exporter.results import RunRecord, State
from exporter.runner import Runtime, run_event_loop, run_probe, tune_gc


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def _cycle(config_path: Path, control: Path, kinds: list[str]) -> dict[str, Any]:
    config = load_config(config_path)
    deps = Runtime.for_config(config)
    tune_gc()  # as the daemon does before its first run
    out: dict[str, Any] = {"kinds": {}}
    records: list[RunRecord] = []
    for name in kinds:
        kind = PROBES[name]
        targets = kind.targets(config)
        if not targets:
            continue
        q0, c0, t0 = queries(control), _cpu(), time.perf_counter()
        recs = await asyncio.gather(*(run_probe(kind, t, deps) for t in targets))
        wall, cpu, q = time.perf_counter() - t0, _cpu() - c0, queries(control) - q0
        records += recs
        errors = Counter((r.result.error or "")[:80] for r in recs if not r.success)
        out["kinds"][name] = {
            "targets": len(targets),
            "succeeded": sum(r.success for r in recs),
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "queries": q,
            "queries_per_s": round(q / wall, 1) if wall else 0.0,
            "run_p50_s": round(statistics.median(r.duration for r in recs), 4),
            "run_max_s": round(max(r.duration for r in recs), 4),
            "errors": dict(errors.most_common(3)),
        }
    state = State()
    state.set_targets([r.target for r in records])
    for r in records:
        state.record(r)
    collector = StateCollector(state.records, lambda: (True, 0.0))
    t0 = time.perf_counter()
    body = generate_latest(make_registry(collector))
    plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert collector.exposition() == body
    first = time.perf_counter() - t0
    # Steady state: one target's new result per scrape (the rest re-used).
    times = []
    for i in range(5):
        state.record(replace(records[i % len(records)], finished=time.time()))
        t0 = time.perf_counter()
        collector.exposition()
        times.append(time.perf_counter() - t0)
    out["render"] = {
        "generate_latest_s": round(plain, 4),
        "first_s": round(first, 4),
        "one_changed_s": round(statistics.median(times), 4),
        "bytes": len(body),
        "series": sum(1 for line in body.splitlines() if line and not line.startswith(b"#")),
    }
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["cpu_total_s"] = round(_cpu(), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", type=Path)
    parser.add_argument("--knot-control", type=Path, required=True)
    parser.add_argument("--kinds", default=",".join(PROBES))
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    print(json.dumps(run_event_loop(_cycle(args.config, args.knot_control, kinds))))


if __name__ == "__main__":
    main()
