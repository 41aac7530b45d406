"""Taking SES events in: drain the queue, count each event once, then delete it.

One run of the ``ses`` probe for an entry with ``events_queue_url`` long-polls the queue in
batches of ten until it is empty, the run's time is up, or :data:`MAX_MESSAGES` were read. For
each batch, in this order:

1. parse every message (:mod:`exporter.probes.ses_events`) and find each recipient's mailbox
   provider (:mod:`exporter.probes.mailbox`; custom domains by their MX, remembered for a day);
2. in ONE store transaction: for each event not seen before (its de-dup key), add it to the
   counters and mark it seen; keep each bounce's diagnostic code for the status page; count each
   invalid message once (by its SQS message id);
3. only then delete the events and the setup messages from the queue.

SQS delivers at least once and a run may stop anywhere: a message deleted was counted first; a
message counted and not deleted (a restart, a failed delete) comes back and is seen as counted;
an event delivered twice (SQS, SNS retries, or both SES formats into one queue) is counted once.
An invalid message is never deleted: the queue's redrive policy moves it to its dead-letter
queue after ``maxReceiveCount`` receives.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from exporter.dnsclient import DnsClient
from exporter.probes.mailbox import OTHER, PROVIDERS, provider_of, provider_of_domain
from exporter.probes.ses_events import (
    BOUNCE_TYPES,
    EVENT_TYPES,
    NotAnEvent,
    SesEvent,
    SesEventError,
    parse,
)
from exporter.probes.ses_sqs import QueueMessage, SqsQueue

EVENTS = "ses_events_total"
BOUNCES = "ses_bounces_total"
COMPLAINTS = "ses_complaints_total"
DELIVERIES = "ses_deliveries_total"
INVALID = "ses_events_invalid_total"
COUNTERS = (EVENTS, BOUNCES, COMPLAINTS, DELIVERIES, INVALID)

SEEN_EVENTS = "ses_events"
SEEN_INVALID = "ses_events_invalid"
PROVIDER_CACHE = "ses_mx_provider"
PROVIDER_TTL = 86400.0
MAX_MESSAGES = 2000
"""At most this many messages a run (a backlog is worked off over several runs)."""
MAX_MX_LOOKUPS = 50
"""At most this many custom domains looked up a run; the others count as ``other`` this time."""
CODES_TABLE = "ses_bounce_codes"
CODES_KEEP = 7 * 86400.0
CREATE_CODES = (
    f"CREATE TABLE IF NOT EXISTS {CODES_TABLE} (ts REAL NOT NULL, region TEXT NOT NULL,"
    " provider TEXT NOT NULL, bounce_type TEXT NOT NULL, code TEXT NOT NULL,"
    " domain TEXT NOT NULL, text TEXT NOT NULL)"
)
INDEX_CODES = f"CREATE INDEX IF NOT EXISTS {CODES_TABLE}_ts ON {CODES_TABLE} (region, ts)"


class Tx(Protocol):
    """What a store transaction offers (:class:`exporter.storage.Tx`)."""

    def add(self, counter: str, labels: dict[str, str], delta: float) -> None: ...
    def seen(self, namespace: str, key: str) -> bool: ...
    def mark_seen(self, namespace: str, key: str, ts: float) -> None: ...
    def get(self, namespace: str, key: str) -> str | None: ...
    def put(self, namespace: str, key: str, value: str) -> None: ...
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


@dataclass
class Intake:
    """What one run did with the queue."""

    received: int = 0
    counted: int = 0
    duplicates: int = 0
    not_events: int = 0
    invalid: int = 0
    deleted: int = 0
    not_deleted: int = 0
    invalid_reasons: Counter[str] = field(default_factory=Counter)
    stopped: str = "queue empty"


@dataclass(frozen=True)
class _Item:
    message: QueueMessage
    parsed: SesEvent | NotAnEvent | None
    error: str = ""


def labels_of(region: str) -> dict[str, list[dict[str, str]]]:
    """Every label set of every counter for a region: counters start at zero, so that rates and
    shares exist before the first bounce (and an absent series never reads as "no problem")."""
    return {
        EVENTS: [{"region": region, "event": e} for e in EVENT_TYPES],
        BOUNCES: [
            {"region": region, "bounce_type": t, "provider": p}
            for t in BOUNCE_TYPES
            for p in PROVIDERS
        ],
        COMPLAINTS: [{"region": region, "provider": p} for p in PROVIDERS],
        DELIVERIES: [{"region": region, "provider": p} for p in PROVIDERS],
        INVALID: [{"region": region}],
    }


async def providers_for(
    domains: Iterable[str], store: Any, dns: DnsClient | None, now: float
) -> dict[str, str]:
    """The provider of each domain: consumer domains from the table, custom domains from the
    store's cache (a day) or their MX (at most :data:`MAX_MX_LOOKUPS`), else ``other``."""
    out: dict[str, str] = {}
    unknown: list[str] = []
    for domain in set(domains):
        known = provider_of_domain(domain) if domain else OTHER
        if known is not None:
            out[domain] = known
        else:
            unknown.append(domain)
    if not unknown:
        return out

    def cached(tx: Tx) -> dict[str, str]:
        hits: dict[str, str] = {}
        for domain in unknown:
            value = tx.get(PROVIDER_CACHE, domain)
            if value is None:
                continue
            provider, _, stamp = value.partition(" ")
            try:
                fresh = now - float(stamp) < PROVIDER_TTL
            except ValueError:
                fresh = False
            if fresh and provider in PROVIDERS:
                hits[domain] = provider
        return hits

    out.update(await store.transact(cached))
    missing = sorted(d for d in unknown if d not in out)
    looked: dict[str, str] = {}
    for domain in missing[:MAX_MX_LOOKUPS]:
        looked[domain] = await provider_of(domain, dns)
    for domain in missing[MAX_MX_LOOKUPS:]:
        out[domain] = OTHER
    if looked:

        def remember(tx: Tx) -> None:
            for domain, provider in looked.items():
                tx.put(PROVIDER_CACHE, domain, f"{provider} {now:.0f}")

        await store.transact(remember)
        out.update(looked)
    return out


def _count(
    tx: Tx, region: str, items: list[_Item], providers: dict[str, str], now: float
) -> Counter[str]:
    """Step 2 of the module doc: one transaction for one batch. Returns what it did."""
    did: Counter[str] = Counter()
    tx.execute(CREATE_CODES)
    tx.execute(INDEX_CODES)
    for item in items:
        if item.parsed is None:
            did["invalid"] += 1
            if not tx.seen(SEEN_INVALID, item.message.message_id):
                tx.mark_seen(SEEN_INVALID, item.message.message_id, now)
                tx.add(INVALID, {"region": region}, 1)
            continue
        if isinstance(item.parsed, NotAnEvent):
            did["not_events"] += 1
            continue
        event = item.parsed
        if tx.seen(SEEN_EVENTS, event.dedup_key):
            did["duplicates"] += 1
            continue
        tx.mark_seen(SEEN_EVENTS, event.dedup_key, now)
        did["counted"] += 1
        tx.add(EVENTS, {"region": region, "event": event.event}, event.count)
        for rcpt in event.recipients:
            provider = providers.get(rcpt.domain, OTHER)
            if event.event == "Bounce":
                labels = {"region": region, "bounce_type": event.bounce_type, "provider": provider}
                tx.add(BOUNCES, labels, 1)
                tx.execute(
                    f"INSERT INTO {CODES_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (now, region, provider, event.bounce_type, rcpt.code, rcpt.domain, rcpt.text),
                )
            elif event.event == "Complaint":
                tx.add(COMPLAINTS, {"region": region, "provider": provider}, 1)
            elif event.event == "Delivery":
                tx.add(DELIVERIES, {"region": region, "provider": provider}, 1)
    tx.execute(f"DELETE FROM {CODES_TABLE} WHERE ts < ?", (now - CODES_KEEP,))
    return did


def _needs_provider(parsed: SesEvent | NotAnEvent | None) -> Iterable[str]:
    if isinstance(parsed, SesEvent) and parsed.event in ("Bounce", "Complaint", "Delivery"):
        return (r.domain for r in parsed.recipients)
    return ()


async def intake(
    queue: SqsQueue,
    store: Any,
    *,
    region: str,
    dns: DnsClient | None,
    wait: int,
    deadline: float,
) -> Intake:
    """Drain the queue into the store (module doc). ``deadline`` is a ``time.monotonic()``
    value: no new long poll starts after it. Raises :class:`~exporter.probes.ses_sqs.
    SqsCallError` when SQS fails (what was counted stays counted)."""
    done = Intake()
    while True:
        if done.received >= MAX_MESSAGES:
            done.stopped = f"{MAX_MESSAGES} messages read, the rest waits for the next run"
            break
        if time.monotonic() >= deadline:
            done.stopped = "time is up, the rest waits for the next run"
            break
        messages = await queue.receive(wait=wait)
        if not messages:
            break
        done.received += len(messages)
        items = [_item(m) for m in messages]
        for item in items:
            if item.error:
                done.invalid_reasons[item.error] += 1
        now = time.time()
        domains = [d for item in items for d in _needs_provider(item.parsed)]
        providers = await providers_for(domains, store, dns, now)
        did = await store.transact(lambda tx: _count(tx, region, items, providers, now))
        done.counted += did["counted"]
        done.duplicates += did["duplicates"]
        done.not_events += did["not_events"]
        done.invalid += did["invalid"]
        deletable = [i.message for i in items if i.parsed is not None]
        failed = await queue.delete(deletable) if deletable else []
        done.not_deleted += len(failed)
        done.deleted += len(deletable) - len(failed)
    return done


def _item(message: QueueMessage) -> _Item:
    try:
        return _Item(message, parse(message.body))
    except SesEventError as exc:
        return _Item(message, None, str(exc))
