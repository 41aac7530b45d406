"""The one store for state that must survive a restart: a SQLite file under ``--storage.path``.

What lives here (and nothing else keeps state on disk): counters that are Prometheus counters
(DMARC and TLS-RPT report counts, SES events), the set of reports and events already counted
(so a report or an SQS message delivered twice is counted once), and small remembered values
(the MTA-STS policy id and hash, the round trip's last success). Probes reach it as
``ctx.store``; it is ``None`` in one-shot runs (``check``), which must not consume report mail or
queue messages nor mark anything seen.

Every access is one transaction (:meth:`Store.transact`), run on the store's own thread so the
event loop never waits on the disk: a probe counts a report and marks it seen in the same
transaction, so a crash between counting and moving the mail neither loses nor double-counts it.
The database is in WAL mode with ``synchronous=FULL``: a committed transaction survives a crash
of the process or the machine. Modules with rows of their own create their tables with
``CREATE TABLE IF NOT EXISTS`` through :meth:`Tx.execute`.

Why the standard library's :mod:`sqlite3` and a thread rather than an async driver (aiosqlite):
aiosqlite is the same thing — a thread per connection running sqlite3 calls — plus a dependency;
here a transaction is one function run on the thread, which keeps a transaction's statements
together without awaiting between them.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

DEFAULT_PATH = "data/"
FILE_NAME = "deliverability-exporter.sqlite3"
SCHEMA_VERSION = 1

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT NOT NULL, labels TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (name, labels));
CREATE TABLE IF NOT EXISTS seen (
    namespace TEXT NOT NULL, key TEXT NOT NULL, ts REAL NOT NULL,
    PRIMARY KEY (namespace, key));
CREATE TABLE IF NOT EXISTS kv (
    namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (namespace, key));
"""


class StoreError(Exception):
    """The store cannot be opened or a transaction failed (the message names the file)."""


def labels_key(labels: Mapping[str, str]) -> str:
    """The canonical text of a label set (sorted), as stored."""
    return json.dumps(sorted(labels.items()), separators=(",", ":"))


class Tx:
    """One transaction's view of the store (only valid inside :meth:`Store.transact`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def add(self, counter: str, labels: Mapping[str, str], delta: float) -> None:
        """Add ``delta`` (>= 0) to a counter series."""
        if delta < 0:
            raise ValueError("a counter only goes up")
        self._conn.execute(
            "INSERT INTO counters (name, labels, value) VALUES (?, ?, ?)"
            " ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value",
            (counter, labels_key(labels), float(delta)),
        )

    def seen(self, namespace: str, key: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM seen WHERE namespace = ? AND key = ?", (namespace, key)
        ).fetchone()
        return row is not None

    def seen_at(self, namespace: str, key: str) -> float | None:
        """When the mark was made; None when there is none."""
        row = self._conn.execute(
            "SELECT ts FROM seen WHERE namespace = ? AND key = ?", (namespace, key)
        ).fetchone()
        return None if row is None else float(row[0])

    def forget(self, namespace: str, key: str) -> None:
        """Drop one mark."""
        self._conn.execute("DELETE FROM seen WHERE namespace = ? AND key = ?", (namespace, key))

    def mark_seen(self, namespace: str, key: str, ts: float) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO seen (namespace, key, ts) VALUES (?, ?, ?)", (namespace, key, ts)
        )

    def forget_seen_before(self, namespace: str, ts: float) -> int:
        """Drop marks older than ``ts`` (bounded memory for at-least-once de-duplication)."""
        cur = self._conn.execute("DELETE FROM seen WHERE namespace = ? AND ts < ?", (namespace, ts))
        return cur.rowcount

    def get(self, namespace: str, key: str) -> str | None:
        row = self._conn.execute(
            "SELECT value FROM kv WHERE namespace = ? AND key = ?", (namespace, key)
        ).fetchone()
        return None if row is None else str(row[0])

    def put(self, namespace: str, key: str, value: str) -> None:
        self._conn.execute(
            "INSERT INTO kv (namespace, key, value) VALUES (?, ?, ?)"
            " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
            (namespace, key, value),
        )

    def counters(self, counter: str) -> list[tuple[dict[str, str], float]]:
        rows = self._conn.execute(
            "SELECT labels, value FROM counters WHERE name = ? ORDER BY labels", (counter,)
        ).fetchall()
        return [({k: v for k, v in json.loads(labels)}, float(value)) for labels, value in rows]

    def execute(self, sql: str, params: tuple[Any, ...] | Mapping[str, Any] = ()) -> list[Any]:
        """Run one statement on a table of the caller's own; returns the rows."""
        return self._conn.execute(sql, params).fetchall()

    def executemany(self, sql: str, params: list[tuple[Any, ...]]) -> None:
        self._conn.executemany(sql, params)


class Store:
    """The SQLite store; :meth:`open` it, :meth:`aclose` it on shutdown."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / FILE_NAME
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def open_sync(cls, directory: str | Path) -> Store:
        """Open (creating the directory and file when missing); :class:`StoreError` with a
        one-line reason when that is impossible (a read-only or missing volume)."""
        store = cls(Path(directory))
        try:
            store._executor.submit(store._connect).result()
        except StoreError:
            store._executor.shutdown(wait=False)
            raise
        return store

    @classmethod
    async def open(cls, directory: str | Path) -> Store:
        return await asyncio.to_thread(cls.open_sync, directory)

    def _connect(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the store {self.path}: {_reason(exc)}") from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot use the store {self.path}: {_reason(exc)}") from None
        self._conn = conn

    def _run(self, fn: Callable[[Tx], T]) -> T:
        conn = self._conn
        if conn is None:
            raise StoreError(f"the store {self.path} is closed")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {_reason(exc)}") from None
        try:
            result = fn(Tx(conn))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StoreError(f"store {self.path}: {_reason(exc)}") from None
        return result

    async def transact(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in one transaction on the store's thread: all of it is committed, or
        (when it raises) none of it. A database error raises :class:`StoreError`."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._run, fn)
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {_reason(exc)}") from None

    async def counters(self, counter: str) -> list[tuple[dict[str, str], float]]:
        """Every series of a counter: (labels, value)."""
        return await self.transact(lambda tx: tx.counters(counter))

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close_sync(self) -> None:
        self._executor.submit(self._close).result()
        self._executor.shutdown(wait=True)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close_sync)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
