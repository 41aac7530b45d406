"""The SQLite store: one transaction per call, all or nothing, kept across a reopen and a kill."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from exporter.storage import FILE_NAME, Store, StoreError, Tx


async def test_counters_seen_marks_and_values_survive_a_reopen(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)

    def count(tx: Tx) -> bool:
        if tx.seen("reports", "google.com/1"):
            return False
        tx.add("messages_total", {"domain": "a.test", "dmarc": "pass"}, 10)
        tx.add("messages_total", {"dmarc": "pass", "domain": "a.test"}, 5)  # same series
        tx.mark_seen("reports", "google.com/1", 1000.0)
        tx.put("mta_sts", "a.test", "id=1")
        return True

    assert await store.transact(count) is True
    assert await store.transact(count) is False  # counted once
    await store.aclose()
    store = await Store.open(tmp_path)
    assert await store.counters("messages_total") == [({"dmarc": "pass", "domain": "a.test"}, 15)]
    assert await store.transact(lambda tx: tx.get("mta_sts", "a.test")) == "id=1"
    assert await store.transact(lambda tx: tx.get("mta_sts", "b.test")) is None
    assert await store.transact(lambda tx: tx.forget_seen_before("reports", 2000.0)) == 1
    assert await store.transact(lambda tx: tx.seen("reports", "google.com/1")) is False
    await store.aclose()


async def test_a_failing_transaction_leaves_nothing(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)

    def half(tx: Tx) -> None:
        tx.add("c_total", {}, 1)
        tx.mark_seen("ns", "k", 1.0)
        raise RuntimeError("the mail could not be parsed after all")

    with pytest.raises(RuntimeError):
        await store.transact(half)
    assert await store.counters("c_total") == []
    assert await store.transact(lambda tx: tx.seen("ns", "k")) is False
    with pytest.raises(ValueError, match="only goes up"):
        await store.transact(lambda tx: tx.add("c_total", {}, -1))
    await store.aclose()


async def test_own_tables_through_execute(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)

    def write(tx: Tx) -> list[object]:
        tx.execute("CREATE TABLE IF NOT EXISTS sources (ip TEXT PRIMARY KEY, n INTEGER)")
        tx.executemany("INSERT INTO sources VALUES (?, ?)", [("192.0.2.1", 3), ("192.0.2.2", 4)])
        return tx.execute("SELECT sum(n) FROM sources")

    assert await store.transact(write) == [(7,)]
    await store.aclose()


def test_an_unusable_directory_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError) as caught:
        Store.open_sync(blocker / "data")
    message = str(caught.value)
    assert message.startswith(f"cannot open the store {blocker / 'data' / FILE_NAME}:")
    assert "\n" not in message


def test_a_killed_writer_loses_no_committed_transaction_and_leaves_no_half(
    tmp_path: Path,
) -> None:
    """A process counting (a counter and a seen mark per transaction) is SIGKILLed mid-stream:
    after a reopen, every transaction it reported committed is there, and counter and marks
    agree (no half-written transaction)."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from exporter.storage import Store

        async def main():
            store = await Store.open({str(tmp_path)!r})
            i = 0
            while True:
                def step(tx, i=i):
                    tx.add("events_total", {{"k": "v"}}, 1)
                    tx.mark_seen("events", str(i), float(i))
                await store.transact(step)
                print(i, flush=True)
                i += 1

        asyncio.run(main())
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    assert proc.stdout is not None
    acknowledged = -1
    deadline = time.monotonic() + 30
    while acknowledged < 200 and time.monotonic() < deadline:
        acknowledged = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert acknowledged >= 200

    async def read() -> tuple[list[tuple[dict[str, str], float]], int]:
        store = await Store.open(tmp_path)
        try:
            counters = await store.counters("events_total")
            rows = await store.transact(lambda tx: tx.execute("SELECT count(*) FROM seen"))
            return counters, int(rows[0][0])
        finally:
            await store.aclose()

    ((labels, total),), marks = asyncio.run(read())
    assert labels == {"k": "v"}
    assert total == marks  # all or nothing, every time
    assert total >= acknowledged + 1  # nothing acknowledged was lost


async def test_seen_at_and_forget_one_mark(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)

    def mark(tx: Tx) -> None:
        tx.mark_seen("ns", "a", 12.5)
        tx.mark_seen("ns", "b", 13.0)

    await store.transact(mark)
    assert await store.transact(lambda tx: tx.seen_at("ns", "a")) == 12.5
    assert await store.transact(lambda tx: tx.seen_at("ns", "c")) is None
    await store.transact(lambda tx: tx.forget("ns", "a"))
    assert await store.transact(lambda tx: (tx.seen("ns", "a"), tx.seen("ns", "b"))) == (
        False,
        True,
    )
    await store.aclose()
