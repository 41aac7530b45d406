"""The status page at scale: size of ``/`` and how long serving it holds the event loop.

    .venv/bin/python -m bench.status_page --domains 10000
    PYTHONPATH=/tmp/base .venv/bin/python -m bench.status_page --domains 10000   # another tree

Builds the daemon's :class:`exporter.state.State` as a 10,000-domain config leaves it: a ``dns``
target per domain and two ``dnsbl`` targets per domain (IP and domain lists), every 20th domain
with findings (a critical and a warning with evidence), every 50th that could not tell, and the
evidence the ``dns`` probe shows (its records). Then serves it with the real HTTP app
(:meth:`exporter.daemon.Exporter.make_app`) on 127.0.0.1 and fetches ``/`` 10 times in a row,
while a ticker on the same loop measures the longest stall. A result is recorded between views
(as a running daemon would), so no view is served from an unchanged state. Prints one JSON
object: page size, first and median view time, longest loop stall, total for 10 views.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from exporter.config import parse_config
from exporter.daemon import Exporter

try:
    from exporter.results import Finding, ProbeResult, RunRecord, State, Target
except ImportError:  # a tree from before the seams (issue 15), for "before" numbers
    from exporter.state import State  # type: ignore[no-redef]

    from exporter.probes.base import Finding, ProbeResult, Target  # type: ignore[no-redef]
    from exporter.runner import RunRecord  # type: ignore[no-redef]

NOW = time.time()


def run_of(target: Target, i: int) -> RunRecord:
    findings: list[Finding] = []
    error = None
    details: dict[str, str] = {}
    if target.probe == "dns":
        details = {
            "spf.record": f"v=spf1 ip4:198.18.{i % 256}.{i % 200} include:_spf.e{i % 5}.test ~all",
            "dmarc.record": f"v=DMARC1; p=quarantine; rua=mailto:dmarc@{target.name}",
            "dkim.s1.record": "v=DKIM1; k=rsa; p=" + "A" * 392,
            "mx": f"10 mx.{target.name}",
        }
    if i % 20 == 7:
        findings = [
            Finding("dmarc_missing", evidence=f"no TXT at _dmarc.{target.name}"),
            Finding("dkim_key_weak", subject="s1", evidence="RSA key of 1024 bits"),
        ]
    if i % 50 == 3:
        error = "SPF: DNS lookup failed: timeout"
    result = ProbeResult(findings=findings, error=error, details=details)
    return RunRecord(target, result, started=NOW - 1, finished=NOW - 0.5, duration=0.5)


def build_state(n: int) -> State:
    state = State()
    targets: list[Target] = []
    for i in range(n):
        name = f"d{i:05d}.bench.test"
        targets.append(Target("dns", name, None, 300.0, 30.0))
        targets.append(Target("dnsbl", f"ip:198.18.{i // 256 % 256}.{i % 256}", None, 1800.0, 30.0))
        targets.append(Target("dnsbl", f"domain:{name}", None, 1800.0, 30.0))
    state.set_targets(targets)
    for i, target in enumerate(targets):
        state.record(run_of(target, i // 3))
    return state


async def measure(n: int, views: int) -> dict[str, Any]:
    state = build_state(n)
    exporter = Exporter(config_path=Path("bench.yaml"), config=parse_config({}))
    exporter.state = state
    server = TestServer(exporter.make_app(), host="127.0.0.1", port=0)
    await server.start_server()
    stalls: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            stalls.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    times: list[float] = []
    size = 0
    targets = list(state.targets.values())
    try:
        async with aiohttp.ClientSession() as http:
            t_all = time.perf_counter()
            for v in range(views):
                state.record(run_of(targets[v * 7 % len(targets)], v))
                t0 = time.perf_counter()
                async with http.get(str(server.make_url("/"))) as resp:
                    body = await resp.read()
                    assert resp.status == 200, resp.status
                times.append(time.perf_counter() - t0)
                size = len(body)
            total = time.perf_counter() - t_all
    finally:
        stop.set()
        await tick
        await server.close()
    return {
        "domains": n,
        "targets": len(targets),
        "page_bytes": size,
        "first_view_s": round(times[0], 4),
        "median_view_s": round(statistics.median(times), 4),
        "views": views,
        "views_total_s": round(total, 3),
        "longest_loop_stall_s": round(max(stalls), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=10_000)
    parser.add_argument("--views", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.domains, args.views)), indent=2))


if __name__ == "__main__":
    main()
