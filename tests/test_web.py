"""The status pages: content for every finding code, escaping, secrets, the detail page with its
history, the real HTTP routes, and the page rendered in headless Chromium (Debian ``chromium``)
on a desktop and a phone viewport, screenshots saved under ``test-artifacts/``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from exporter import web
from exporter.collector import METRICS_CHUNK, make_registry
from exporter.config import parse_config
from exporter.daemon import Exporter
from exporter.findings import CATALOGUE
from exporter.results import HISTORY, Finding, ProbeResult, RunRecord, State, Target, sample
from exporter.web import PAGE_SIZE, Index, status_page, target_page

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
SECRET = "hunter2-do-not-show-7c1f"


def make_target(probe: str, name: str, settings: object = None) -> Target:
    return Target(probe=probe, name=name, settings=settings, interval=300.0, timeout=30.0)


def run_of(
    target: Target,
    findings: list[Finding],
    *,
    error: str | None = None,
    details: dict[str, str] | None = None,
    at: float = 1_700_000_000.0,
) -> RunRecord:
    result = ProbeResult(findings=findings, error=error, details=dict(details or {}))
    return RunRecord(target, result, started=at - 0.25, finished=at, duration=0.25)


def catalogue_state() -> State:
    """One target per probe carrying every finding code of that probe, a pending target,
    a target that could not tell, and a target whose settings hold a secret."""
    state = State()
    probes = sorted({spec.probe for spec in CATALOGUE.values()})
    targets = [make_target(p, f"{p}-target.example") for p in probes]
    pending = make_target("dns", "pending.example")
    failing = make_target("dns", "unreachable.example")
    os.environ["TEST_WEB_SMTP_PASSWORD"] = SECRET
    secret_settings = parse_config(
        {
            "tls": [
                {
                    "target": "smtp.example.com:587",
                    "username": "probe@example.com",
                    "password_env": "TEST_WEB_SMTP_PASSWORD",
                }
            ]
        }
    ).tls[0]
    secretive = make_target("tls", "smtp.example.com:587", secret_settings)
    state.set_targets([*targets, pending, failing, secretive])
    for target in targets:
        codes = [c for c, spec in CATALOGUE.items() if spec.probe == target.probe]
        findings = [Finding(c, evidence=f"evidence of {c} <b>", subject="subj") for c in codes]
        state.record(run_of(target, findings, details={"record": "v=spf1 <script>x</script>"}))
    state.record(run_of(failing, [], error="SPF: DNS lookup failed: timeout"))
    state.record(run_of(secretive, [], details={"auth": "accepted"}))
    state.next_run[pending.key] = 1_700_000_060.0
    return state


# ----- the HTML -------------------------------------------------------------------------------


def test_status_page_shows_every_code_with_summary_evidence_and_fix() -> None:
    page = status_page(catalogue_state(), True, Path("/etc/exporter/config.yaml"))
    for code, spec in CATALOGUE.items():
        assert f"<code>{code}</code>" in page
        assert html.escape(spec.summary) in page
        assert f"<b>Fix:</b> {html.escape(spec.fix)}" in page
        assert html.escape(f"evidence of {code} <b>") in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # probe text is escaped
    assert "Could not tell:</b> SPF: DNS lookup failed: timeout" in page
    assert "not run yet" in page and "PENDING" in page
    assert "<script" not in page.replace("&lt;script", "")  # no scripts of our own either
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no external assets


def test_targets_are_listed_worst_first() -> None:
    page = status_page(catalogue_state(), True, Path("c.yaml"))
    badges = re.findall(r'<section class="card (\w+)">', page)
    order = {"critical": 0, "warning": 1, "pending": 2, "ok": 3}
    assert badges == sorted(badges, key=order.__getitem__)
    assert badges[0] == "critical" and "ok" in badges and "pending" in badges


def test_secrets_never_appear() -> None:
    state = catalogue_state()
    pages = [
        status_page(state, True, Path("c.yaml")),
        target_page(state, "tls", "smtp.example.com:587"),
    ]
    for page in pages:
        assert page is not None
        assert SECRET not in page
        assert "TEST_WEB_SMTP_PASSWORD" not in page  # settings are never rendered


def test_failed_reload_is_announced() -> None:
    assert "last config reload failed" in status_page(State(), False, Path("c.yaml"))
    assert "No targets configured." in status_page(State(), True, Path("c.yaml"))


def many_targets(n: int) -> State:
    """``n`` dns targets: every 10th critical, every 7th could not tell, the rest clean."""
    state = State()
    targets = [make_target("dns", f"d{i:04d}.example") for i in range(n)]
    state.set_targets(targets)
    for i, t in enumerate(targets):
        findings = [Finding("spf_missing")] if i % 10 == 0 else []
        state.record(run_of(t, findings, error="timeout" if i % 7 == 0 else None))
    return state


def names_on(page: str) -> list[str]:
    return re.findall(r'<span class="name"><a href="[^"]*">([^<]+)</a>', page)


def test_status_page_is_paginated_worst_first() -> None:
    state = many_targets(2 * PAGE_SIZE + 50)
    pages = [status_page(state, True, Path("c.yaml"), page=p) for p in (1, 2, 3)]
    shown = [names_on(p) for p in pages]
    assert [len(s) for s in shown] == [PAGE_SIZE, PAGE_SIZE, 50]
    everything = [n for s in shown for n in s]
    assert sorted(everything) == sorted(t.name for t in state.targets.values())
    critical = {f"d{i:04d}.example" for i in range(0, 2 * PAGE_SIZE + 50, 10)}
    assert set(everything[: len(critical)]) == critical  # the worst come first, over all pages
    assert "targets 101-200 of 250 · page 2 of 3" in pages[1]
    assert 'href="?page=3"' in pages[1] and 'href="?page=1"' in pages[1]
    # The summary counts every target, whatever the page.
    assert re.search(r'class="badge critical">FAIL</span> 25<', pages[2])
    # Out of range pages show the nearest one.
    assert names_on(status_page(state, True, Path("c.yaml"), page=99)) == shown[2]
    assert names_on(status_page(state, True, Path("c.yaml"), page=-3)) == shown[0]


def test_status_page_filters_by_state() -> None:
    state = many_targets(300)
    page = status_page(state, True, Path("c.yaml"), status="critical")
    assert names_on(page) == [f"d{i:04d}.example" for i in range(0, 300, 10)]
    assert '<a href="./">all</a>' in page
    assert "No PENDING targets." in status_page(state, True, Path("c.yaml"), status="pending")
    # An unknown state shows everything.
    assert len(names_on(status_page(state, True, Path("c.yaml"), status="<x>"))) == PAGE_SIZE


def test_index_reorders_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(web.time, "monotonic", lambda: clock[0])
    state = many_targets(30)
    index = Index()
    first = index.ordering(state)
    assert index.ordering(state) is first
    # A result arrives: the order is kept for REORDER_AFTER seconds, then rebuilt.
    state.record(run_of(state.targets[("dns", "d0001.example")], [Finding("spf_missing")]))
    assert index.ordering(state) is first
    clock[0] += web.REORDER_AFTER
    second = index.ordering(state)
    assert second is not first and second.generation == state.generation
    assert second.counts["critical"] == first.counts["critical"] + 1
    # Cards always show the latest result, even from an older order.
    state.record(run_of(state.targets[("dns", "d0002.example")], [], error="fresh error"))
    page = status_page(state, True, Path("c.yaml"), index=index)
    assert "fresh error" in page and index.ordering(state) is second


def test_detail_page_has_the_history_newest_first() -> None:
    state = State()
    target = make_target("dns", "hist.example")
    state.set_targets([target])
    for i in range(HISTORY + 5):
        findings = [Finding("dmarc_missing")] if i % 2 else []
        error = "MX: DNS lookup failed: timeout" if i == HISTORY + 4 else None
        state.record(run_of(target, findings, error=error, at=1_700_000_000.0 + i))
    page = target_page(state, "dns", "hist.example")
    assert page is not None
    rows = re.findall(r'<tr><td><time datetime="([^"]+)"', page)
    assert len(rows) == HISTORY
    assert rows == sorted(rows, reverse=True)
    assert "MX: DNS lookup failed: timeout" in page  # the latest run's error, shown in full
    assert f"the last {HISTORY} are kept" in page
    assert page.count("<code>dmarc_missing</code>") == HISTORY // 2
    assert target_page(state, "dns", "other.example") is None


# ----- over HTTP ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(state: State) -> AsyncIterator[str]:
    exporter = Exporter(config_path=Path("demo.yaml"), config=parse_config({}))
    exporter.state = state
    server = TestServer(exporter.make_app(), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield str(server.make_url("/"))
    finally:
        await server.close()


async def test_routes(tmp_path: Path) -> None:
    async with serving(catalogue_state()) as base, aiohttp.ClientSession() as http:
        async with http.get(base, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            index = await resp.text()
        link = re.search(r'href="(target\?probe=dns&amp;name=dns-target\.example)"', index)
        assert link is not None
        url = base + html.unescape(link.group(1))
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            assert resp.status == 200
            assert "Recent runs" in await resp.text()
        missing = base + "target?probe=dns&name=nope.example"
        async with http.get(missing, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            assert resp.status == 404
        for query in ("?page=2", "?page=abc", "?page=-1&status=critical", "?status=%00"):
            async with http.get(base + query, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                assert resp.status == 200, query
                assert "dns-target.example" in await resp.text(), query


async def test_metrics_are_streamed_as_the_exposition(tmp_path: Path) -> None:
    """``/metrics`` over HTTP: a body of many chunks (written part by part, never joined) is
    byte for byte the exposition, with its Content-Length; HEAD gives the headers only."""
    state = State()
    targets = [make_target("dns", f"d{i}.example") for i in range(3000)]
    state.set_targets(targets)
    for i, target in enumerate(targets):  # about 0.8 MB of series: a few chunks
        result = ProbeResult(samples=[sample("spf_records", i, domain=target.name)])
        state.record(RunRecord(target, result, started=1.0, finished=2.0, duration=1.0))
    exporter = Exporter(config_path=Path("demo.yaml"), config=parse_config({}), state=state)
    server = TestServer(exporter.make_app(), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        url = str(server.make_url("/metrics"))
        async with aiohttp.ClientSession() as http:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == CONTENT_TYPE_LATEST
                body = await resp.read()
                assert int(resp.headers["Content-Length"]) == len(body)
            async with http.head(url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
                assert resp.status == 200
                assert int(resp.headers["Content-Length"]) == len(body)
                assert await resp.read() == b""
    finally:
        await server.close()
    assert len(body) > 2 * METRICS_CHUNK
    assert body == exporter.collector.exposition()
    assert body == generate_latest(make_registry(exporter.collector))
    assert b'deliverability_spf_records{domain="d2999.example"} 2999.0\n' in body


# ----- in a real browser ----------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")


class Cdp:
    """Just enough of the Chrome DevTools Protocol: commands on one page, and its events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive_json(), 30)
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg["result"])
            self.events.append(msg)

    async def wait_event(self, method: str) -> None:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(await asyncio.wait_for(self.ws.receive_json(), 30))

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"]["value"]

    async def load(self, url: str) -> None:
        self.events.clear()
        await self.call("Page.navigate", url=url)
        await self.wait_event("Page.loadEventFired")

    async def screenshot(self, path: Path, width: int, mobile: bool) -> None:
        height = await self.evaluate("document.documentElement.scrollHeight")
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=int(height),
            deviceScaleFactor=1,
            mobile=mobile,
        )
        shot = await self.call("Page.captureScreenshot", format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def chromium(tmp_path: Path) -> AsyncIterator[Cdp]:
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        port = None
        while port is None:
            line = await asyncio.wait_for(proc.stderr.readline(), 30)
            assert line, "chromium exited before DevTools listened"
            m = re.search(rb"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            port = int(m.group(1)) if m else None
        drain = asyncio.create_task(proc.stderr.read())  # keep the pipe from filling up
        async with aiohttp.ClientSession() as http:
            listing = f"http://127.0.0.1:{port}/json/list"
            async with http.get(listing, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                pages = [t for t in json.loads(await resp.text()) if t["type"] == "page"]
            async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                cdp = Cdp(ws)
                await cdp.call("Page.enable")
                yield cdp
        drain.cancel()
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_status_page_in_chromium_shows_findings_and_fixes(tmp_path: Path) -> None:
    # Not skipped when absent: scripts/test installs Debian chromium, and a skip would hide it.
    assert CHROMIUM is not None, "needs Debian chromium (scripts/test installs it)"
    ARTIFACTS.mkdir(exist_ok=True)
    state = catalogue_state()
    async with serving(state) as base, chromium(tmp_path) as cdp:
        await cdp.load(base)
        await cdp.screenshot(ARTIFACTS / "status-page-desktop.png", 1280, mobile=False)
        # innerText is the text as rendered: hidden or collapsed elements are not in it.
        visible = " ".join((await cdp.evaluate("document.body.innerText")).split())
        for code, spec in CATALOGUE.items():
            assert code in visible
            assert "Fix: " + " ".join(spec.fix.split()) in visible
            assert " ".join(spec.summary.split()) in visible
        assert "Could not tell: SPF: DNS lookup failed: timeout" in visible
        assert SECRET not in visible
        assert await cdp.evaluate("document.querySelectorAll('script').length") == 0
        first = await cdp.evaluate("document.querySelector('section .badge').innerText")
        assert first == "FAIL"

        await cdp.call(
            "Emulation.setDeviceMetricsOverride",
            width=390,
            height=844,
            deviceScaleFactor=1,
            mobile=True,
        )
        await cdp.load(base)
        # Readable on a phone: nothing wider than the screen, text not shrunk to fit.
        assert await cdp.evaluate("document.documentElement.scrollWidth") <= 390
        assert await cdp.evaluate("window.innerWidth") == 390
        await cdp.screenshot(ARTIFACTS / "status-page-phone.png", 390, mobile=True)

        await cdp.load(base + "target?probe=dns&name=dns-target.example")
        detail = await cdp.evaluate("document.body.innerText")
        assert "Recent runs" in detail
        assert "v=spf1 <script>x</script>" in detail  # the evidence is open on the detail page
        assert await cdp.evaluate("document.documentElement.scrollWidth") <= 390
        await cdp.screenshot(ARTIFACTS / "target-page-phone.png", 390, mobile=True)
    for name in ("status-page-desktop.png", "status-page-phone.png", "target-page-phone.png"):
        assert (ARTIFACTS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
