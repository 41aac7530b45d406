"""The runner's own contract, tested with probe kinds written for it: the one broad catch (with
the traceback logged), the hard timeout, the metric and finding tables enforced, and the
per-config resources made once, handed to every run, and closed when the config is retired."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exporter.config import Config, parse_config
from exporter.net.dnsclient import make_resolver
from exporter.net.network import Network
from exporter.probes.base import ProbeContext
from exporter.results import Finding, ProbeResult, Target, sample
from exporter.runner import Runtime, run_probe
from exporter.storage import Store


@dataclass
class Counted:
    """Resources that count how they were used."""

    made_for: Config
    runs: int = 0
    closed: bool = False

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class Kind:
    """A probe kind whose run does what the test asks."""

    behaviour: str
    name: str = "dns"  # a real kind's name: its metrics and findings are in the tables
    title: str = "test"
    config_key: str = "domains"
    made: list[Counted] = field(default_factory=list)
    gate: asyncio.Event | None = None

    def targets(self, config: Config) -> list[Target[str]]:
        return [Target(self.name, "t", "settings", 60.0, config.global_.timeout)]

    def resources(self, config: Config, net: Network) -> Counted:
        if self.behaviour == "resources fail":
            raise OSError("no such thing")
        res = Counted(config)
        self.made.append(res)
        return res

    async def run(self, target: Target[str], ctx: ProbeContext[Counted]) -> ProbeResult:
        ctx.resources.runs += 1
        if self.behaviour == "raise":
            raise TypeError("a bug in our own code")
        if self.behaviour == "hang":
            await asyncio.sleep(3600)
        if self.behaviour == "wait" and self.gate is not None:
            await self.gate.wait()
        if self.behaviour == "undeclared metric":
            return ProbeResult(
                samples=[sample("no_such_metric", 1), sample("mx_records", 2, domain="a.test")]
            )
        if self.behaviour == "wrong labels":
            return ProbeResult(samples=[sample("mx_records", 2, host="a.test")])
        if self.behaviour == "unknown finding":
            return ProbeResult(findings=[Finding("no_such_code"), Finding("mx_missing")])
        if self.behaviour == "store":
            assert ctx.store is not None
            await ctx.store.transact(lambda tx: tx.add("c_total", {"a": "b"}, 1))
        return ProbeResult(samples=[sample("mx_records", 1, domain="a.test")])


def config(timeout: str = "5s") -> Config:
    return parse_config({"global": {"timeout": timeout, "nameservers": ["127.0.0.1:9"]}})


def runtime(cfg: Config | None = None, store: Store | None = None) -> Runtime:
    cfg = cfg or config()
    return Runtime(make_resolver(["127.0.0.1:9"]), cfg, store=store)


async def once(kind: Kind, rt: Runtime) -> Any:
    (target,) = kind.targets(rt.config)
    return await run_probe(kind, target, rt)


async def test_a_probe_that_raises_is_an_error_with_its_traceback_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="exporter.runner")
    rec = await once(Kind("raise"), runtime())
    assert not rec.success
    assert rec.result.error == "internal error: TypeError: a bug in our own code"
    (logged,) = [r for r in caplog.records if r.getMessage() == "probe crashed"]
    assert logged.exc_info is not None and logged.exc_info[0] is TypeError


async def test_a_probe_that_hangs_is_stopped_at_its_timeout() -> None:
    rec = await once(Kind("hang"), runtime(config("200ms")))
    assert rec.result.error == "timed out after 0.2s"
    assert rec.duration < 3600


async def test_an_undeclared_metric_is_a_probe_bug_and_the_declared_samples_stay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = await once(Kind("undeclared metric"), runtime())
    assert rec.result.error is not None
    assert "metric 'no_such_metric' is not declared" in rec.result.error
    assert [s.metric for s in rec.result.samples] == ["mx_records"]
    assert any("probe bug" in r.getMessage() for r in caplog.records)


async def test_wrong_labels_are_a_probe_bug() -> None:
    rec = await once(Kind("wrong labels"), runtime())
    assert rec.result.error is not None and "has labels ['host']" in rec.result.error
    assert rec.result.samples == []


async def test_an_unknown_finding_code_is_a_probe_bug() -> None:
    rec = await once(Kind("unknown finding"), runtime())
    assert rec.result.error == "internal error: finding code 'no_such_code' is not in the catalogue"
    assert [f.code for f in rec.result.findings] == ["mx_missing"]


async def test_resources_are_made_once_per_config_and_closed_when_retired() -> None:
    kind = Kind("ok")
    first = runtime()
    for _ in range(3):
        assert (await once(kind, first)).success
    assert len(kind.made) == 1 and kind.made[0].runs == 3
    assert kind.made[0].made_for is first.config
    # A reload: a new runtime makes new resources; the old ones close once retired.
    second = runtime()
    await once(kind, second)
    assert len(kind.made) == 2
    first.retire()
    await asyncio.sleep(0)  # the close runs as a task
    await asyncio.sleep(0)
    assert kind.made[0].closed and not kind.made[1].closed
    await second.aclose()
    assert kind.made[1].closed


async def test_a_retired_runtime_closes_after_its_last_run() -> None:
    kind = Kind("wait", gate=asyncio.Event())
    rt = runtime()
    running = asyncio.create_task(once(kind, rt))
    for _ in range(100):  # until the run has started and holds the resources
        if kind.made and kind.made[0].runs:
            break
        await asyncio.sleep(0.01)
    rt.retire()
    await asyncio.sleep(0.05)
    assert not kind.made[0].closed  # a run still uses it
    assert kind.gate is not None
    kind.gate.set()
    assert (await running).success
    for _ in range(5):
        await asyncio.sleep(0)
    assert kind.made[0].closed


async def test_resources_that_cannot_be_made_fail_the_run() -> None:
    rec = await once(Kind("resources fail"), runtime())
    assert rec.result.error == "internal error: OSError: no such thing"


async def test_the_store_reaches_the_probe(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    try:
        rec = await once(Kind("store"), runtime(store=store))
        assert rec.success, rec.result.error
        assert await store.counters("c_total") == [({"a": "b"}, 1.0)]
    finally:
        await store.aclose()
    rec = await once(Kind("ok"), runtime())
    assert rec.success  # no store (as in `check`): probes see None
