"""The HTTP server's bounds (exporter/httpguard.py): connections that send no request are closed,
kept-alive connections are closed when idle, a request in progress never is, and at the cap an
idle connection makes room for a new one. Then the real daemon at a 128-descriptor limit with 200
idle connections open: it keeps serving and probing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from dnsserver import DnsServer

from exporter import httpguard
from exporter.httpguard import ConnectionGuard, GuardedSite, connection_cap


@contextlib.asynccontextmanager
async def guarded(cap: int) -> AsyncIterator[tuple[int, ConnectionGuard]]:
    guard = ConnectionGuard(cap)
    app = httpguard.web.Application(middlewares=[guard.middleware])

    async def slow(request: httpguard.web.Request) -> httpguard.web.Response:
        await asyncio.sleep(float(request.query.get("s", "0")))
        return httpguard.web.Response(text="done")

    app.router.add_get("/", slow)
    runner = httpguard.web.AppRunner(app, access_log=None)
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", 0, guard)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield port, guard
    finally:
        await runner.cleanup()


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httpguard, "HEADER_TIMEOUT", 0.3)
    monkeypatch.setattr(httpguard, "IDLE_TIMEOUT", 0.5)


async def closed_by_server(reader: asyncio.StreamReader, within: float = 10.0) -> bytes:
    """Everything the server sent until it closed the connection (fails if it never does)."""
    async with asyncio.timeout(within):
        return await reader.read()


async def request(writer: asyncio.StreamWriter, path: str = "/") -> None:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()


@pytest.mark.usefixtures("short_timeouts")
async def test_a_connection_that_sends_no_request_is_closed() -> None:
    async with guarded(8) as (port, guard):
        silent = await asyncio.open_connection("127.0.0.1", port)
        dripping = await asyncio.open_connection("127.0.0.1", port)
        dripping[1].write(b"GET / HTTP/1.1\r\nHost")  # headers that never end
        assert await closed_by_server(silent[0]) == b""
        assert await closed_by_server(dripping[0]) == b""
        assert guard.open == 0
        for _, w in (silent, dripping):
            w.close()


@pytest.mark.usefixtures("short_timeouts")
async def test_keep_alive_ends_when_idle_but_never_mid_request() -> None:
    async with guarded(8) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await request(writer, "/?s=1.5")  # longer than both timeouts
        await asyncio.sleep(0.1)
        await request(writer, "/")  # kept alive: a second request on the same connection
        data = await closed_by_server(reader)
        assert data.count(b"HTTP/1.1 200 OK") == 2 and data.count(b"done") == 2
        writer.close()


async def test_at_the_cap_the_longest_idle_connection_makes_room() -> None:
    async with guarded(3) as (port, guard):
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert guard.open == 3
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await request(writer)
        assert b"done" in await reader.readuntil(b"done")
        assert guard.evicted == 1 and guard.open == 3
        assert await closed_by_server(idle[0][0]) == b""  # the oldest went
        for _, w in [*idle, (reader, writer)]:
            w.close()


async def test_at_the_cap_with_every_connection_busy_a_new_one_is_refused() -> None:
    async with guarded(2) as (port, guard):
        busy = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for _, w in busy:
            await request(w, "/?s=1")
        await asyncio.sleep(0.2)
        late = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(late[0]) == b""
        assert guard.refused == 1
        for r, w in busy:  # the requests in progress finish
            assert b"done" in await r.readuntil(b"done")
            w.close()
        late[1].close()


def test_connection_cap_keeps_three_quarters_of_the_descriptors() -> None:
    assert connection_cap(128) == 32
    assert connection_cap(1024) == 256
    assert connection_cap(65536) == httpguard.MAX_CONNECTIONS
    assert connection_cap(8) == 4


# ----- the daemon at a low descriptor limit ---------------------------------------------------

FD_LIMIT = 128
IDLE_CONNECTIONS = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def zone() -> Iterator[DnsServer]:
    with DnsServer() as server:
        server.add_txt("one.test", "v=spf1 -all")
        server.add_txt("_dmarc.one.test", "v=DMARC1; p=reject; rua=mailto:d@one.test")
        server.add("one.test", "MX", "10 mx.one.test.")
        server.add("mx.one.test", "A", "192.0.2.1")
        yield server


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def last_run(port: int) -> tuple[float, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {}
    for line in body.splitlines():
        for metric in ("probe_last_run_timestamp_seconds", "probe_success"):
            if line.startswith(f'deliverability_{metric}{{probe="dns",target="one.test"}}'):
                values[metric] = float(line.rsplit(" ", 1)[1])
    return values["probe_last_run_timestamp_seconds"], values["probe_success"]


def test_daemon_keeps_serving_and_probing_with_200_idle_connections(
    tmp_path: Path, zone: DnsServer
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "global": {"interval": "1s", "timeout": "5s", "nameservers": [zone.address],
                   "allow_short_intervals": True, "dnssec": False},
        "domains": [{"domain": "one.test"}],
    }))  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--config.file", str(config),
         "--web.listen-address", f"127.0.0.1:{port}", "--storage.path", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_low_fd_limit,
    )  # fmt: skip
    idle: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                before, ok = last_run(port)
                break
            except (OSError, KeyError):
                assert time.monotonic() < deadline and proc.poll() is None, "did not start"
                time.sleep(0.2)
        assert ok == 1
        for _ in range(IDLE_CONNECTIONS):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            idle.append(s)
        time.sleep(0.5)
        # Scrapes are served and probes keep running and succeeding, for several intervals.
        seen = []
        for _ in range(6):
            ran, ok = last_run(port)
            seen.append((ran, ok))
            time.sleep(1.0)
        assert all(ok == 1 for _, ok in seen), seen
        assert seen[-1][0] > before, "the probe stopped running"
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        assert fds < FD_LIMIT, fds
        print(f"\n{IDLE_CONNECTIONS} idle connections at a {FD_LIMIT}-fd limit: {fds} fds open")
    finally:
        for s in idle:
            s.close()
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=5)
    assert "Too many open files" not in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
