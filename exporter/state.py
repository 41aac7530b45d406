"""The latest results of the targets in the current config, and a short history of each.

Written by the scheduler's jobs, read by the collector, the status page and ``check``. Only
targets of the current config are kept: :meth:`State.set_targets` (called on load and reload)
drops the records of targets that left the config, so their series disappear from ``/metrics``.
Everything runs on one event loop, so no locking is needed.
"""

from __future__ import annotations

import collections
import dataclasses
from dataclasses import dataclass, field

from exporter.probes.base import ProbeResult, Target
from exporter.runner import RunRecord

HISTORY = 20

_CLEAN = ProbeResult()
"""The result of every history entry of a run without findings or error (shared, never modified)."""


@dataclass
class State:
    targets: dict[tuple[str, str], Target] = field(default_factory=dict)
    latest: dict[tuple[str, str], RunRecord] = field(default_factory=dict)
    history: dict[tuple[str, str], collections.deque[RunRecord]] = field(default_factory=dict)
    next_run: dict[tuple[str, str], float] = field(default_factory=dict)
    generation: int = 0
    """Bumped whenever a result or the target set changes (lets readers skip unchanged work)."""

    def set_targets(self, targets: list[Target]) -> None:
        """Replace the target set; results of targets that stay are kept until their next run
        (even when their settings changed), those of removed targets are dropped."""
        new = {t.key: t for t in targets}
        for key in list(self.latest):
            if key not in new:
                self.latest.pop(key, None)
                self.history.pop(key, None)
                self.next_run.pop(key, None)
        self.targets = new
        self.generation += 1

    def record(self, rec: RunRecord) -> None:
        key = rec.target.key
        if key not in self.targets:
            return  # a run that finished after a reload removed its target
        self.latest[key] = rec
        # History keeps what the status page shows of past runs (state, findings, error), not
        # their samples: at 1,000 domains the full records would cost hundreds of MB. A clean run
        # shares one empty result (about 200 bytes less per entry: 20 x 3,000 entries at 1,000
        # domains); history entries are never modified.
        found, error = rec.result.findings, rec.result.error
        result = _CLEAN if not found and error is None else ProbeResult(findings=found, error=error)
        slim = dataclasses.replace(rec, result=result)
        self.history.setdefault(key, collections.deque(maxlen=HISTORY)).append(slim)
        self.generation += 1

    def records(self) -> list[RunRecord]:
        return [self.latest[k] for k in self.targets if k in self.latest]
