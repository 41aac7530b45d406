"""The daemon under sustained load, in-process against a real loopback DNS server.

* ``test_soak``: the real :class:`~exporter.daemon.Exporter` (APScheduler, runner, state,
  collector) with every interval accelerated to 50 ms runs thousands of probe cycles, some against
  a domain whose DNS never answers, with a config reload every 0.4 s (2,000 cycles or 40 s after
  a 4 s warm-up, whichever comes first); open file descriptors,
  asyncio tasks, tracked objects and RSS after warm-up and at the end must match.
* ``test_reload_under_load``: the real HTTP app on a loopback port; scrapers hammer ``/metrics``
  and the status page while ``POST /-/reload`` swaps between two configs and slow probes are in
  flight. No scrape may fail or miss a target that is in both configs, and no result of such a
  target may be dropped.

The longer, configurable version of the soak is ``bench/soak.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from dnsserver import DnsServer
from faults.leakcheck import Usage, settle, usage
from prometheus_client.parser import text_string_to_metric_families

from exporter import daemon
from exporter.config import Config, load_config
from exporter.daemon import Exporter
from exporter.results import RunRecord, State
from exporter.runner import Runtime
from exporter.storage import Store

STABLE = [f"d{i}.test" for i in range(4)]
SLOW = "slow.test"
"""A domain whose DNS never answers: its runs are always in flight for the resolver lifetime."""
TOGGLED = "toggled.test"
"""In every other config: appears and disappears with reloads."""


@dataclass
class CountingState(State):
    """State that counts what it was handed, and what it dropped (a run whose target was gone)."""

    accepted: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def record(self, rec: RunRecord) -> None:
        kept = rec.target.key in self.targets
        tally = self.accepted if kept else self.dropped
        tally[rec.target.name] = tally.get(rec.target.name, 0) + 1
        super().record(rec)

    @property
    def total(self) -> int:
        return sum(self.accepted.values())


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    server = DnsServer()
    for domain in [*STABLE, TOGGLED]:
        server.add_txt(domain, "v=spf1 ip4:192.0.2.0/24 -all")
        server.add_txt(f"_dmarc.{domain}", f"v=DMARC1; p=reject; rua=mailto:d@{domain}")
        server.add(domain, "MX", f"10 mx.{domain}.")
        server.add(f"mx.{domain}", "A", "192.0.2.25")
    server.timeout.update({SLOW, f"_dmarc.{SLOW}"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def write_config(path: Path, dns: DnsServer, *, toggled: bool, interval: str) -> None:
    domains = [*STABLE, SLOW] + ([TOGGLED] if toggled else [])
    path.write_text(
        yaml.safe_dump(
            {
                "global": {
                    "interval": interval,
                    "timeout": "5s",
                    "nameservers": [dns.address],
                    "dnssec": False,
                    "allow_short_intervals": True,
                },
                "domains": [{"domain": d, "sending_ips": ["192.0.2.10"]} for d in domains],
            }
        )
    )


def make_exporter(path: Path) -> tuple[Exporter, CountingState]:
    state = CountingState()
    exporter = Exporter(config_path=path, config=load_config(path), state=state, lifecycle=True)
    return exporter, state


def flat(before: Usage, after: Usage, *, tasks: int, objects: int, rss_kib: int) -> None:
    assert after.fds <= before.fds + 2, f"file descriptors grew: {before} -> {after}"
    assert after.tasks <= before.tasks + tasks, f"tasks grew: {before} -> {after}"
    assert after.objects <= before.objects + objects, f"objects grew: {before} -> {after}"
    assert after.rss_kib <= before.rss_kib + rss_kib, f"RSS grew: {before} -> {after}"


@pytest.mark.slow
async def test_soak(dns: DnsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon, "FIRST_RUN_JITTER", 0.0)
    short_lifetime(monkeypatch)
    path = tmp_path / "config.yaml"
    write_config(path, dns, toggled=True, interval="50ms")
    exporter, state = make_exporter(path)
    exporter.start()
    reloads = 0

    async def run_for(seconds: float, cycles: int | None = None) -> None:
        """Run for ``seconds``, or until ``cycles`` more probe runs were recorded."""
        nonlocal reloads
        end = time.monotonic() + seconds
        goal = None if cycles is None else state.total + cycles
        while time.monotonic() < end and (goal is None or state.total < goal):
            await asyncio.sleep(0.4)
            write_config(path, dns, toggled=reloads % 2 == 1, interval="50ms")
            ok, message = exporter.reload()
            assert ok, message
            reloads += 1

    async def quiet_usage() -> Usage:
        """Usage with the schedule paused and the runs in flight finished (each run is bounded
        by the 0.3 s resolver lifetime), so the snapshot does not depend on what was running."""
        assert exporter._scheduler is not None
        exporter._scheduler.pause()
        await asyncio.sleep(1.0)
        await settle()
        snapshot = usage()
        exporter._scheduler.resume()
        return snapshot

    try:
        await run_for(4.0)  # warm-up: caches, pools, histories filled
        before, cycles_before = await quiet_usage(), state.total
        await run_for(40.0, cycles=2000)
        after, cycles = await quiet_usage(), state.total - cycles_before
    finally:
        exporter.stop()
    report = f"{cycles} cycles, {reloads} reloads; warm {before}; end {after}"
    print(report)
    assert cycles >= 1000, report
    # Every stable domain kept running and succeeding; the silent one kept failing.
    for domain in STABLE:
        assert state.accepted[domain] >= 200, report
        assert state.latest[("dns", domain)].success
    assert not state.latest[("dns", SLOW)].success
    assert "timeout" in (state.latest[("dns", SLOW)].result.error or "")
    flat(before, after, tasks=1, objects=4000, rss_kib=16 * 1024)


def short_lifetime(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's runtimes get a 0.3 s DNS lifetime so the silent domain fails fast."""
    original = Runtime.for_config

    def for_config(config: Config, store: Store | None = None, **_: object) -> Runtime:
        return original(config, store, lifetime=0.3)

    monkeypatch.setattr(Runtime, "for_config", for_config)


async def test_reload_under_load(
    dns: DnsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "FIRST_RUN_JITTER", 0.0)
    short_lifetime(monkeypatch)
    path = tmp_path / "config.yaml"
    write_config(path, dns, toggled=True, interval="100ms")
    exporter, state = make_exporter(path)
    runner = web.AppRunner(exporter.make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    exporter.start()
    stop = asyncio.Event()
    scrapes = 0
    reloads = 0
    problems: list[str] = []

    async def wait_for_first_results() -> None:
        while not all(("dns", d) in state.latest for d in [*STABLE, SLOW]):  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    async def scraper(session: aiohttp.ClientSession) -> None:
        nonlocal scrapes
        while not stop.is_set():
            async with session.get(f"{base}/metrics", timeout=aiohttp.ClientTimeout(5)) as resp:
                body = await resp.text()
                if resp.status != 200:
                    problems.append(f"/metrics answered {resp.status}")
                    continue
            seen = set()
            for family in text_string_to_metric_families(body):
                for s in family.samples:
                    if s.name == "deliverability_probe_success":
                        seen.add(s.labels["target"])
                    if s.name == "deliverability_config_last_reload_successful" and s.value != 1:
                        problems.append("a reload was reported as failed")
            missing = {*STABLE, SLOW} - seen
            if missing:
                problems.append(f"a scrape missed {sorted(missing)}")
            scrapes += 1

    async def status_reader(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            async with session.get(f"{base}/", timeout=aiohttp.ClientTimeout(5)) as resp:
                if resp.status != 200:
                    problems.append(f"/ answered {resp.status}")
                await resp.read()

    async def reloader(session: aiohttp.ClientSession) -> None:
        nonlocal reloads
        while not stop.is_set():
            write_config(path, dns, toggled=reloads % 2 == 1, interval="100ms")
            async with session.post(f"{base}/-/reload", timeout=aiohttp.ClientTimeout(5)) as r:
                if r.status != 200:
                    problems.append(f"reload answered {r.status}: {await r.text()}")
            reloads += 1
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(wait_for_first_results(), 10)
        async with aiohttp.ClientSession() as session:
            tasks = [
                *(asyncio.create_task(scraper(session)) for _ in range(4)),
                asyncio.create_task(status_reader(session)),
                asyncio.create_task(reloader(session)),
            ]
            await asyncio.sleep(4.0)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
    finally:
        exporter.stop()
        await runner.cleanup()
    print(
        f"{scrapes} scrapes, {reloads} reloads, records {state.accepted}, dropped {state.dropped}"
    )
    assert problems == []
    assert scrapes >= 50 and reloads >= 20
    # Runs of targets in both configs were never dropped; only the toggled one may lose a run
    # that finished after its target left the config.
    assert set(state.dropped) <= {TOGGLED}
    for domain in STABLE:
        assert state.accepted[domain] >= 10
    assert exporter.reload_ok
