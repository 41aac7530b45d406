"""SES events counted from SQS in any order, any number of times, in any batches: the store ends
the same (at-least-once delivery, SNS retries, both formats in one queue, events out of order).
A real SQLite store; the batches are what ``intake`` hands to its one transaction per batch."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter import storage
from exporter.probes.ses_intake import BOUNCES, COMPLAINTS, DELIVERIES, EVENTS, INVALID
from exporter.probes.ses_intake import _count as count_batch
from exporter.probes.ses_intake import _item as item_of
from exporter.probes.ses_sqs import QueueMessage
from exporter.storage import Tx

DATA = Path(__file__).parent / "data" / "ses_events"
NAMES = sorted(p.stem for p in DATA.glob("*.json") if p.stem.startswith(("event-", "notif")))


def _body(name: str, wrap: str) -> str:
    inner = json.loads((DATA / f"{name}.json").read_text())
    if wrap == "sns":
        envelope: dict[str, Any] = json.loads((DATA / "sns-envelope.json").read_text())
        envelope["Message"] = json.dumps(inner)
        return json.dumps(envelope)
    return json.dumps(inner)


_DELIVERIES = st.lists(
    st.tuples(st.sampled_from(NAMES), st.sampled_from(["raw", "sns"]), st.integers(0, 3)),
    min_size=1,
    max_size=20,
)


def _counters(deliveries: list[tuple[str, str, int]], batch: int) -> dict[str, Any]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(storage._SCHEMA)
    tx = Tx(conn)
    items = [
        item_of(QueueMessage(f"sqs-{n}-{copy}", f"rh-{n}", _body(name, wrap), 1))
        for n, (name, wrap, copy) in enumerate(deliveries)
    ]
    for start in range(0, len(items), batch):
        count_batch(tx, region="r", items=items[start : start + batch], providers={}, now=1.0)
    out = {name: sorted(map(repr, tx.counters(name)))
           for name in (EVENTS, BOUNCES, COMPLAINTS, DELIVERIES, INVALID)}  # fmt: skip
    conn.close()
    return out


@settings(max_examples=80, deadline=None)
@given(_DELIVERIES, st.randoms(use_true_random=False), st.integers(1, 10))
def test_order_repeats_and_batches_change_nothing(
    deliveries: list[tuple[str, str, int]], rnd: Any, batch: int
) -> None:
    once = _counters(sorted(set(deliveries)), 10)
    shuffled = list(deliveries) + list(deliveries)  # every message delivered (at least) twice
    rnd.shuffle(shuffled)
    assert _counters(shuffled, batch) == once
