"""The runtime the daemon runs probes in: its event loop and garbage-collector settings."""

from __future__ import annotations

import asyncio
import gc

from exporter.runner import GC_THRESHOLDS, run_event_loop, tune_gc


def test_run_event_loop_runs_on_uvloop_and_returns_the_result() -> None:
    async def which() -> str:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()).__module__

    assert run_event_loop(which()).startswith("uvloop")


def test_tune_gc_sets_thresholds_and_freezes_what_is_alive() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
