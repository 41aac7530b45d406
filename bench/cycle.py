"""One measured probe cycle, run in its own process so that its peak RSS and CPU are its own.

``python -m bench.cycle CONFIG --knot-control SOCKET [--kinds dns,dnsbl] [--steady 3]``
loads the config exactly as the daemon does, builds the daemon's runtime
(:meth:`exporter.runner.Runtime.for_config`), then for each probe kind in turn starts every
target at once through :func:`exporter.runner.run_probe` (the daemon's first cycle, without
the start-up jitter) and records wall time, CPU seconds and the queries knot answered:

* the **first** cycle of the process: cold, as after a restart (nothing memoized, lazy imports
  and first-use costs inside it); for the first kind also the time **from process start**
  (interpreter, imports, config, runtime, then the cycle: what the daemon pays before its first
  cycle is done);
* then (``dns`` only, ``--steady-kinds``) ``--steady`` more cycles of the same kind in the same
  process, each after forgetting the shared DNS answers
  (:meth:`exporter.net.dnsshared.SharedDns.forget`), as the daemon's next cycle finds them (its
  interval is far longer than they are kept): every question goes on the wire again, what is
  kept by text (parsed records, keys) is warm. The answers are the same as the first cycle's, so
  each domain's verdicts are replayed (:mod:`exporter.probes.dns.replay`). Their median is the
  **steady** cycle;
* then as many cycles with the ``dns`` probe's memory of the last runs forgotten as well: every
  domain judged again, as in a cycle in which every domain's DNS changed (that one also asks
  and compares the last run's questions first). Their median is the **judged** cycle.

Finally it renders ``/metrics`` from the first cycle's records with the collector the daemon
serves. Prints one JSON object.
"""

from __future__ import annotations

import time

T_MODULE = time.perf_counter()  # before the exporter is imported

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from prometheus_client import generate_latest  # noqa: E402

from bench.knot import queries  # noqa: E402
from exporter.collector import StateCollector, make_registry  # noqa: E402
from exporter.config import load_config  # noqa: E402
from exporter.probes import PROBES  # noqa: E402
from exporter.results import RunRecord, State  # noqa: E402
from exporter.runner import Runtime, run_event_loop, run_probe, tune_gc  # noqa: E402


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _since_process_start() -> float:
    """Seconds since this process was started (Linux ``/proc``, 10 ms ticks): the interpreter's
    own start-up included. Falls back to the time since this module started."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - T_MODULE
    return uptime - ticks / os.sysconf("SC_CLK_TCK")


async def _measure(kind: Any, targets: list[Any], deps: Runtime, control: Path) -> dict[str, Any]:
    """One cycle of ``kind``. ``from_start_s``: from process start to the end of the cycle,
    less the bench's own ``knotc`` call before it (the daemon makes none)."""
    k0 = time.perf_counter()
    q0 = queries(control)
    c0, t0 = _cpu(), time.perf_counter()
    knotc_s = t0 - k0
    recs = await asyncio.gather(*(run_probe(kind, t, deps) for t in targets))
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    from_start = _since_process_start() - knotc_s
    from_module = time.perf_counter() - T_MODULE - knotc_s
    q = queries(control) - q0
    errors = Counter((r.result.error or "")[:80] for r in recs if not r.success)
    return {
        "records": recs,
        "targets": len(targets),
        "succeeded": sum(r.success for r in recs),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "queries": q,
        "queries_per_s": round(q / wall, 1) if wall else 0.0,
        "run_p50_s": round(statistics.median(r.duration for r in recs), 4),
        "run_max_s": round(max(r.duration for r in recs), 4),
        "errors": dict(errors.most_common(3)),
        "from_start_s": round(from_start, 3),
        "from_module_s": round(from_module, 3),
    }


async def _repeat(
    kind: Any, targets: list[Any], deps: Runtime, control: Path, n: int, forget: Any
) -> list[dict[str, Any]]:
    """``n`` more cycles, each after forgetting the shared DNS answers and, when ``forget`` is
    the ``dns`` probe's memory of its last runs, that too."""
    runs = []
    for _ in range(n):
        deps.net.shared.forget()
        if forget is not None:
            forget.clear()
        run = await _measure(kind, targets, deps, control)
        del run["records"], run["from_start_s"], run["from_module_s"]
        runs.append(run)
    return runs


async def _cycle(
    config_path: Path, control: Path, kinds: list[str], steady: int, steady_kinds: list[str]
) -> dict[str, Any]:
    config = load_config(config_path)
    deps = Runtime.for_config(config)
    tune_gc()  # as the daemon does before its first run
    out: dict[str, Any] = {"kinds": {}}
    records: list[RunRecord] = []
    configured = {kind.name: kind for kind in PROBES.configured(config)}  # as the daemon
    for name in kinds:
        kind = configured.get(name)
        targets = kind.targets(config) if kind is not None else []
        if kind is None or not targets:
            continue
        first = await _measure(kind, targets, deps, control)
        records += first.pop("records")
        if out["kinds"]:  # only the first kind measured is timed from process start
            del first["from_start_s"], first["from_module_s"]
        replays = getattr(deps.resources_for(kind), "replays", None)
        repeat = steady if name in steady_kinds else 0
        runs = await _repeat(kind, targets, deps, control, repeat, forget=None)
        judged = await _repeat(
            kind, targets, deps, control, repeat if replays is not None else 0, replays
        )
        for key, measured in (("steady", runs), ("judged", judged)):
            if measured:
                first[key] = {
                    "wall_s": statistics.median(r["wall_s"] for r in measured),
                    "cpu_s": statistics.median(r["cpu_s"] for r in measured),
                    "queries": measured[-1]["queries"],
                    "succeeded_min": min(r["succeeded"] for r in measured),
                    "wall_s_runs": [r["wall_s"] for r in measured],
                    "cpu_s_runs": [r["cpu_s"] for r in measured],
                }
        out["kinds"][name] = first
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
    parser.add_argument(
        "--steady", type=int, default=3, help="cycles after the first, same process (median)"
    )
    parser.add_argument("--steady-kinds", default="dns", help="kinds measured steady too")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    steady_kinds = [k for k in args.steady_kinds.split(",") if k]
    cycle = _cycle(args.config, args.knot_control, kinds, args.steady, steady_kinds)
    print(json.dumps(run_event_loop(cycle)))


if __name__ == "__main__":
    main()
