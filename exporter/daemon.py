"""The running exporter: the schedule, config reloads and the HTTP server.

Where the schedule is: :meth:`Exporter._sync_jobs` keeps one APScheduler job per (probe, target),
each run once right after start (with a small jitter) and then every ``interval`` with jitter,
``max_instances=1`` so a job never overlaps itself, the probe's hard timeout enforced by
:func:`exporter.runner.run_probe`.

Reload (SIGHUP or ``POST /-/reload``, the latter only with ``--web.enable-lifecycle``) is all or
nothing: the config file is parsed and everything it needs is built (:func:`plan`: its targets
and its runtime) before anything is swapped, so a config that fails at any step leaves the running
one untouched. Every failure sets ``config_last_reload_successful 0`` and logs one short line.
Jobs of unchanged targets keep their schedule and results; removed targets lose their jobs and
series. ``--config.check`` runs the same :func:`plan`, so what would fail at start fails there.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CONTENT_TYPE_LATEST

from exporter.collector import METRICS_CHUNK, StateCollector, chunks, make_registry
from exporter.config import Config, ConfigError, load_config
from exporter.httpguard import IDLE_TIMEOUT, ConnectionGuard, GuardedSite, raise_fd_limit
from exporter.probes import PROBES
from exporter.redact import redact
from exporter.results import State, Target
from exporter.runner import Runtime, run_probe, tune_gc
from exporter.storage import Store
from exporter.web import Index, status_page, target_page

log = logging.getLogger("exporter")

FIRST_RUN_JITTER = 2.0
"""Seconds over which the first runs after start are spread."""


def all_targets(config: Config) -> list[Target[Any]]:
    """Every (probe, target) of the config, in registry order."""
    out: list[Target[Any]] = []
    for kind in PROBES.configured(config):
        out.extend(kind.targets(config))
    return out


def plan(
    config: Config, shard: Shard | None = None, store: Store | None = None
) -> tuple[list[Target[Any]], Runtime]:
    """Everything a config needs to run, built without starting anything: the targets this
    replica runs and the config's runtime. Raise :class:`ConfigError` when any of it fails."""
    try:
        targets = all_targets(config)
        if shard is not None:
            targets = [t for t in targets if shard.owns(t)]
        runtime = Runtime.for_config(config, store)
    except Exception as exc:  # the config parsed but cannot be applied: name it, apply none of it
        problem = short(f"cannot apply the config: {type(exc).__name__}: {exc}")
        raise ConfigError([problem]) from None
    return targets, runtime


MAX_REPORTED = 50
"""Problems listed in a failed reload's HTTP answer (``--config.check`` lists them all)."""
MAX_PROBLEM_CHARS = 300
"""A reload failure is one log line: the first problem, at most this long, and a count."""


def short(text: str, limit: int = MAX_PROBLEM_CHARS) -> str:
    """One line of at most ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass(frozen=True)
class Shard:
    """``--shard I/N``: this replica runs the targets whose stable hash falls in slice I of N.

    The hash is CRC-32 of ``probe:target``, so every replica with the same config agrees on the
    split without talking to the others, and N replicas cover every target exactly once.
    """

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        index_text, sep, count_text = text.partition("/")
        if not (
            sep
            and (index_text + count_text).isascii()
            and index_text.isdigit()
            and count_text.isdigit()
        ):
            raise ValueError(f"invalid shard {text!r}: expected I/N, e.g. 1/3")
        index, count = int(index_text), int(count_text)
        if not 1 <= index <= count:
            raise ValueError(f"invalid shard {text!r}: I must be between 1 and N")
        return cls(index, count)

    def owns(self, target: Target[Any]) -> bool:
        return zlib.crc32(f"{target.probe}:{target.name}".encode()) % self.count == self.index - 1


@dataclass
class Exporter:
    config_path: Path
    config: Config
    state: State = field(default_factory=State)
    reload_ok: bool = True
    reload_ts: float = field(default_factory=time.time)
    started: bool = False
    shard: Shard | None = None
    store: Store | None = None
    """State that survives a restart (``--storage.path``); lives across reloads."""
    lifecycle: bool = False
    """``--web.enable-lifecycle``: ``POST /-/reload`` reloads (otherwise 403, as in Prometheus)."""
    _runtime: Runtime | None = None
    _scheduler: AsyncIOScheduler | None = None

    def __post_init__(self) -> None:
        self._runtime = Runtime.for_config(self.config, self.store)
        self.collector = StateCollector(
            self.state.records, lambda: (self.reload_ok, self.reload_ts)
        )
        self.registry = make_registry(self.collector)
        self.index = Index()

    # ----- schedule ---------------------------------------------------------------------------
    def start(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.start()
        self._sync_jobs(self.targets(self.config))
        self.started = True
        log.info("exporter started", extra={"targets": len(self.state.targets)})

    def stop(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    async def aclose(self) -> None:
        """After :meth:`stop`: close the runtime (probe resources, sockets) and the store."""
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            await runtime.aclose()
        if self.store is not None:
            await self.store.aclose()

    def targets(self, config: Config) -> list[Target[Any]]:
        """The targets of ``config`` this replica runs (all of them unless sharded)."""
        targets = all_targets(config)
        if self.shard is None:
            return targets
        return [t for t in targets if self.shard.owns(t)]

    @property
    def runtime(self) -> Runtime | None:
        return self._runtime

    def _sync_jobs(self, targets: list[Target[Any]]) -> None:
        assert self._scheduler is not None
        old = dict(self.state.targets)
        self.state.set_targets(targets)
        wanted = {_job_id(t): t for t in targets}
        for job in self._scheduler.get_jobs():
            target = wanted.get(job.id)
            if target is None or old.get(target.key) != target:
                job.remove()
        existing = {job.id for job in self._scheduler.get_jobs()}
        now = datetime.now(UTC)
        for job_id, target in wanted.items():
            if job_id in existing:
                continue
            first = now + timedelta(seconds=random.uniform(0, FIRST_RUN_JITTER))
            self._scheduler.add_job(
                self._run_job,
                IntervalTrigger(seconds=target.interval, jitter=_jitter(target.interval)),
                args=[target],
                id=job_id,
                name=job_id,
                next_run_time=first,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(target.interval)),
            )
            self.state.next_run[target.key] = first.timestamp()

    async def _run_job(self, target: Target[Any]) -> None:
        runtime = self._runtime
        if runtime is None:  # shutting down
            return
        try:
            record = await run_probe(PROBES[target.probe], target, runtime)
        except asyncio.CancelledError:
            # Shutdown cancels runs in flight; that is not an error worth a traceback.
            log.debug("probe run cancelled", extra={"probe": target.probe, "target": target.name})
            return
        self.state.record(record)
        self._note_next_run(target)

    def _note_next_run(self, target: Target[Any]) -> None:
        if self._scheduler is None:
            return
        job = self._scheduler.get_job(_job_id(target))
        if job is not None and job.next_run_time is not None:
            self.state.next_run[target.key] = job.next_run_time.timestamp()

    # ----- reload -----------------------------------------------------------------------------
    def reload(self) -> tuple[bool, str]:
        """Re-read the config file and build all it needs; on any problem keep the running
        config whole. Never raises (it runs from a signal handler)."""
        try:
            config = load_config(self.config_path)
            targets, runtime = plan(config, self.shard, self.store)
        except ConfigError as exc:
            return self._reload_failed(exc.problems)
        except Exception as exc:  # anything else: the same answer, never half a reload
            return self._reload_failed([f"{type(exc).__name__}: {exc}"])
        self.config = config
        old, self._runtime = self._runtime, runtime
        if old is not None:
            old.retire()  # closed when its last run ends
        self._sync_jobs(targets)
        self.reload_ok = True
        self.reload_ts = time.time()
        log.info("config reloaded", extra={"targets": len(self.state.targets)})
        return True, "config reloaded"

    def _reload_failed(self, problems: list[str]) -> tuple[bool, str]:
        self.reload_ok = False
        first = short(problems[0]) if problems else "unknown problem"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        log.error("config reload failed, keeping the running config",
                  extra={"problem": first + more})  # fmt: skip
        shown = [short(redact(p)) for p in problems[:MAX_REPORTED]]
        if len(problems) > MAX_REPORTED:
            shown.append(f"... and {len(problems) - MAX_REPORTED} more")
        return False, "\n".join(shown)

    # ----- HTTP -------------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/-/healthy", self._healthy)
        app.router.add_get("/-/ready", self._ready)
        app.router.add_post("/-/reload", self._reload)
        app.router.add_get("/", self._index)
        app.router.add_get("/target", self._target)
        return app

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        # generate_latest's bytes, formatted incrementally and written in chunks: never joined.
        parts = self.collector.exposition_parts()
        response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_LATEST})
        response.content_length = sum(len(p) for p in parts)
        await response.prepare(request)
        if request.method != "HEAD":
            for chunk in chunks(parts, METRICS_CHUNK):
                await response.write(chunk)
        await response.write_eof()
        return response

    async def _healthy(self, request: web.Request) -> web.Response:
        return web.Response(text="Healthy.\n")

    async def _ready(self, request: web.Request) -> web.Response:
        if not self.started:
            return web.Response(status=503, text="Not ready.\n")
        return web.Response(text="Ready.\n")

    async def _reload(self, request: web.Request) -> web.Response:
        if not self.lifecycle:
            return web.Response(status=403, text="Lifecycle API is not enabled.\n")
        if not same_origin(request):
            # A browser sends Origin with every cross-site POST: a page elsewhere must not be
            # able to make a visitor's browser reload the exporter (an HTML form, text/plain).
            return web.Response(status=403, text="Cross-origin request refused.\n")
        ok, message = self.reload()
        return web.Response(status=200 if ok else 500, text=message + "\n")

    async def _index(self, request: web.Request) -> web.Response:
        try:
            page = int(request.query.get("page", "1"))
        except ValueError:
            page = 1
        html = status_page(self.state, self.reload_ok, self.config_path, page=page,
                           status=request.query.get("status"), index=self.index)  # fmt: skip
        return web.Response(text=html, content_type="text/html")

    async def _target(self, request: web.Request) -> web.Response:
        probe, name = request.query.get("probe", ""), request.query.get("name", "")
        html = target_page(self.state, probe, name)
        if html is None:
            return web.Response(status=404, text=f"no target {probe} {name} in the config\n")
        return web.Response(text=html, content_type="text/html")


def same_origin(request: web.Request) -> bool:
    """True without an ``Origin`` header (curl, scripts) or when it names this server, as the
    request reached it (scheme, host and port of the ``Host`` header)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    own = f"{request.scheme}://{request.host}".lower()
    return origin.strip().lower() == own


def _job_id(target: Target[Any]) -> str:
    return f"{target.probe}:{target.name}"


def _jitter(interval: float) -> float:
    """Up to 10% of the interval, at most 30 s."""
    return min(30.0, interval * 0.1)


async def serve(
    exporter: Exporter,
    host: str,
    port: int,
    ssl_context: object | None = None,
    middlewares: list[object] | None = None,
) -> None:
    """Run the exporter until SIGINT/SIGTERM; SIGHUP reloads."""
    fd_limit = raise_fd_limit()
    guard = ConnectionGuard()
    app = exporter.make_app()
    app.middlewares.append(guard.middleware)  # first: a request waiting for auth is in progress
    if middlewares:
        app.middlewares.extend(middlewares)  # type: ignore[arg-type]
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=IDLE_TIMEOUT)
    await runner.setup()
    site = GuardedSite(runner, host, port, guard, ssl_context=ssl_context)
    await site.start()
    log.info("listening", extra={"address": f"{host}:{port}", "max_connections": guard.cap,
                                 "fd_limit": fd_limit})  # fmt: skip
    tune_gc()
    exporter.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, exporter.reload)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        exporter.stop()
        await runner.cleanup()
        await exporter.aclose()
