"""SES events of the ``ses`` probe: drain the queue, count each event once, then delete it.

For an entry with ``events_queue_url``, one run reads the queue's attributes (what waits, where
invalid messages go, how long messages are kept), then long-polls it in batches of ten until it
is empty, half the run's time is spent, or :data:`MAX_MESSAGES` were read. For each batch, in
this order:

1. parse every message (:mod:`exporter.probes.ses_events`, in a thread: a batch of large
   messages is a second of CPU) and find each recipient's mailbox provider
   (:mod:`exporter.probes.mailbox`; custom domains by their MX, remembered for a day);
2. in ONE store transaction: for each event not seen before (its de-dup key), add it to the
   counters and mark it seen; keep each bounce's diagnostic code (domain only) for the status
   page; count each invalid message once (by its SQS message id);
3. only then delete the events and the setup messages from the queue.

SQS delivers at least once and a run may stop anywhere: a message deleted was counted first; a
message counted and not deleted (a restart, a failed delete) comes back and is seen as counted;
an event delivered twice (SQS, SNS retries, or both SES formats into one queue) is counted once.
An invalid message is never deleted: the queue's redrive policy moves it to its dead-letter
queue after ``maxReceiveCount`` receives. SQS errors are "could not tell" (``probe_success 0``
with the reason); what was counted before stays counted.

In one-shot runs (``check``: no store) nothing is received, counted or deleted: the run reports
what waits in the queue (receiving would hide messages from the daemon for the visibility
timeout and count towards their redrive).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.config import SesConfig
from exporter.net.dnsclient import DnsClient
from exporter.probes.base import ProbeContext
from exporter.probes.mailbox import OTHER, PROVIDERS, provider_of, provider_of_domain
from exporter.probes.ses_aws import SesResources
from exporter.probes.ses_events import (
    BOUNCE_TYPES,
    EVENT_TYPES,
    NotAnEvent,
    SesEvent,
    SesEventError,
    parse,
)
from exporter.probes.ses_sqs import QueueMessage, SqsCallError, SqsQueue, describe_sqs_error
from exporter.results import Finding, ProbeResult, Sample, Table, sample
from exporter.storage import Store, StoreError, Tx

EVENTS = "ses_events_total"
BOUNCES = "ses_bounces_total"
COMPLAINTS = "ses_complaints_total"
DELIVERIES = "ses_deliveries_total"
INVALID = "ses_events_invalid_total"
WAITING = "ses_events_queue_messages"

SEEN_EVENTS = "ses_events"
SEEN_INVALID = "ses_events_invalid"
MIN_KEEP = 4 * 86400.0
"""De-dup marks are kept as long as the queue keeps a message (``MessageRetentionPeriod``, SQS's
default 4 days, at most 14) and a day more: no copy of a counted event can come later."""
PRUNE_EVERY = 3600.0
PROVIDER_CACHE = "ses_mx_provider"
PROVIDER_TTL = 86400.0
MAX_MESSAGES = 2000
"""At most this many messages a run (a backlog is worked off over several runs)."""
MAX_MX_LOOKUPS = 50
"""At most this many custom domains looked up a run; the others count as ``other`` this time."""
CODES_TABLE = "ses_bounce_codes"
CODES_KEEP = 7 * 86400.0
CODES_SHOWN = 5
"""Diagnostic codes shown per provider on the status page."""
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {CODES_TABLE} (ts REAL NOT NULL, region TEXT NOT NULL,"
    " provider TEXT NOT NULL, bounce_type TEXT NOT NULL, code TEXT NOT NULL,"
    " domain TEXT NOT NULL, text TEXT NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS {CODES_TABLE}_region_ts ON {CODES_TABLE} (region, ts)",
)
_TOP_CODES = f"""
SELECT provider, bounce_type, code, n, domain, text FROM (
    SELECT provider, bounce_type, code, COUNT(*) AS n, domain, text, MAX(ts) AS last,
           ROW_NUMBER() OVER (PARTITION BY provider ORDER BY COUNT(*) DESC, MAX(ts) DESC) AS rank
    FROM {CODES_TABLE} WHERE region = ? AND ts >= ?
    GROUP BY provider, bounce_type, code)
WHERE rank <= ? ORDER BY provider, n DESC, last DESC
"""  # bare columns beside MAX() come from the row holding the maximum (SQLite's documented rule)


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
    stopped: str = "the queue is empty"


@dataclass(frozen=True)
class _Item:
    message: QueueMessage
    parsed: SesEvent | NotAnEvent | None
    error: str = ""


def series(region: str) -> dict[str, list[dict[str, str]]]:
    """Every label set of every counter of a region: counters start at zero, so that rates and
    shares exist before the first bounce (an absent series never reads as "no problem")."""
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


# ----- providers ---------------------------------------------------------------------------------


async def providers_for(
    domains: Iterable[str], store: Store, dns: DnsClient | None, *, now: float, lookups: bool
) -> dict[str, str]:
    """The provider of each domain: consumer domains from the table, custom domains from the
    store (a day) or, with ``lookups``, their MX (at most :data:`MAX_MX_LOOKUPS`, concurrently);
    a domain not found that way counts as ``other`` this time."""
    out: dict[str, str] = {}
    unknown: list[str] = []
    for domain in set(domains):
        known = provider_of_domain(domain) if domain else OTHER
        if known is None:
            unknown.append(domain)
        else:
            out[domain] = known
    if not unknown:
        return out

    def cached(tx: Tx) -> dict[str, str]:
        hits: dict[str, str] = {}
        for domain in unknown:
            provider, _, stamp = (tx.get(PROVIDER_CACHE, domain) or "").partition(" ")
            if (
                provider in PROVIDERS
                and stamp.isascii()
                and stamp.isdigit()
                and now - int(stamp) < PROVIDER_TTL
            ):
                hits[domain] = provider
        return hits

    out.update(await store.transact(cached))
    missing = sorted(d for d in unknown if d not in out)
    todo = missing[:MAX_MX_LOOKUPS] if lookups else []
    found = await asyncio.gather(*(provider_of(d, dns) for d in todo))
    looked = {d: p for d, p in zip(todo, found, strict=True) if p is not None}
    if looked:

        def remember(tx: Tx) -> None:
            for domain, provider in looked.items():
                tx.put(PROVIDER_CACHE, domain, f"{provider} {int(now)}")

        await store.transact(remember)
    out.update(looked)
    for domain in missing:
        out.setdefault(domain, OTHER)
    return out


def _needs_provider(parsed: SesEvent | NotAnEvent | None) -> Iterable[str]:
    if isinstance(parsed, SesEvent) and parsed.event in ("Bounce", "Complaint", "Delivery"):
        return (r.domain for r in parsed.recipients)
    return ()


# ----- one batch ---------------------------------------------------------------------------------


def _count(
    tx: Tx, *, region: str, items: list[_Item], providers: dict[str, str], now: float
) -> Counter[str]:
    """Step 2 of the module doc: one transaction for one batch. Returns what it did."""
    did: Counter[str] = Counter()
    for statement in _SCHEMA:
        tx.execute(statement)
    for item in items:
        if item.parsed is None:
            did["invalid"] += 1
            if not tx.seen(f"{SEEN_INVALID}:{region}", item.message.message_id):
                tx.mark_seen(f"{SEEN_INVALID}:{region}", item.message.message_id, now)
                tx.add(INVALID, {"region": region}, 1)
            continue
        if isinstance(item.parsed, NotAnEvent):
            did["not_events"] += 1
            continue
        event = item.parsed
        if tx.seen(f"{SEEN_EVENTS}:{region}", event.dedup_key):
            did["duplicates"] += 1
            continue
        tx.mark_seen(f"{SEEN_EVENTS}:{region}", event.dedup_key, now)
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
    return did


def _prune(tx: Tx, now: float, region: str, keep: float) -> None:
    """Forget the region's de-dup marks older than ``keep`` seconds and old diagnostic rows, at
    most once an hour (it scans)."""
    last = tx.get(SEEN_EVENTS, f"pruned:{region}")
    if last is not None and last.isascii() and last.isdigit() and now - int(last) < PRUNE_EVERY:
        return
    for statement in _SCHEMA:
        tx.execute(statement)
    tx.forget_seen_before(f"{SEEN_EVENTS}:{region}", now - keep)
    tx.forget_seen_before(f"{SEEN_INVALID}:{region}", now - keep)
    tx.execute(f"DELETE FROM {CODES_TABLE} WHERE region = ? AND ts < ?", (region, now - CODES_KEEP))
    tx.put(SEEN_EVENTS, f"pruned:{region}", str(int(now)))


def _items(messages: list[QueueMessage]) -> list[_Item]:
    return [_item(m) for m in messages]


def _item(message: QueueMessage) -> _Item:
    try:
        return _Item(message, parse(message.body))
    except SesEventError as exc:
        return _Item(message, None, str(exc))


async def intake(
    queue: SqsQueue,
    store: Store,
    *,
    region: str,
    dns: DnsClient | None,
    wait: int,
    deadline: float,
    retention: float | None = None,
    done: Intake | None = None,
) -> Intake:
    """Drain the queue into the store (module doc). ``deadline`` is a ``time.monotonic()``
    value: no long poll and no MX lookup starts after it. ``retention`` is the queue's message
    retention (how long de-dup marks are kept, see :data:`MIN_KEEP`). Raises
    :class:`SqsCallError` and :class:`~exporter.storage.StoreError`; what ``done`` (given by the
    caller) says was counted and deleted before stays so."""
    done = done if done is not None else Intake()
    keep = max(MIN_KEEP, retention or 0.0) + 86400.0
    await store.transact(lambda tx: _prune(tx, time.time(), region, keep))
    read: set[str] = set()
    while True:
        if done.received >= MAX_MESSAGES:
            done.stopped = f"{MAX_MESSAGES} messages read; the rest waits for the next run"
            break
        if time.monotonic() >= deadline:
            done.stopped = "half the run's time spent; the rest waits for the next run"
            break
        messages = [m for m in await queue.receive(wait=wait) if m.message_id not in read]
        if not messages:  # empty, or only what this run read and left (its visibility ended)
            break
        read.update(m.message_id for m in messages)
        done.received += len(messages)
        items = await asyncio.to_thread(_items, messages)  # off the event loop
        done.invalid_reasons.update(item.error for item in items if item.error)
        now = time.time()
        domains = [d for item in items for d in _needs_provider(item.parsed)]
        lookups = time.monotonic() < deadline
        providers = await providers_for(domains, store, dns, now=now, lookups=lookups)
        did = await store.transact(functools.partial(_count, region=region, items=items,
                                                     providers=providers, now=now))  # fmt: skip
        for key in ("counted", "duplicates", "not_events", "invalid"):
            setattr(done, key, getattr(done, key) + did[key])
        deletable = [i.message for i in items if i.parsed is not None]
        failed = await queue.delete(deletable) if deletable else []
        done.not_deleted += len(failed)
        done.deleted += len(deletable) - len(failed)
    return done


# ----- the result --------------------------------------------------------------------------------


async def _queue(cfg: SesConfig, res: SesResources, run_timeout: float) -> SqsQueue:
    from botocore.exceptions import BotoCoreError

    def build() -> SqsQueue:
        try:
            return res.queue_for(cfg, run_timeout)
        except BotoCoreError as exc:
            raise describe_sqs_error("credentials", exc) from None

    return await asyncio.get_running_loop().run_in_executor(res.queue_pool, build)


async def counter_samples(store: Store, region: str) -> list[Sample]:
    """The region's counters as samples (zero for the series nothing was counted in yet)."""

    def read(tx: Tx) -> dict[str, list[tuple[dict[str, str], float]]]:
        return {name: tx.counters(name) for name in series(region)}

    stored = await store.transact(read)
    out: list[Sample] = []
    for name, label_sets in series(region).items():
        values = {
            tuple(sorted(lb.items())): v for lb, v in stored[name] if lb.get("region") == region
        }
        keys = {tuple(sorted(lb.items())) for lb in label_sets} | set(values)
        for key in sorted(keys):
            out.append(sample(name, values.get(key, 0.0), **dict(key)))
    return out


async def codes_table(store: Store, region: str, now: float) -> Table:
    """The status page's table: the top diagnostic codes per provider in the last 24 hours."""

    def read(tx: Tx) -> list[tuple[object, ...]]:
        for statement in _SCHEMA:
            tx.execute(statement)
        return [tuple(r) for r in tx.execute(_TOP_CODES, (region, now - 86400.0, CODES_SHOWN))]

    rows = await store.transact(read)
    return Table(
        title="Bounces by mailbox provider and diagnostic code, last 24 hours",
        columns=("Provider", "Type", "Diagnostic code", "Bounces", "Example domain",
                 "Example text"),
        rows=tuple(tuple(str(v) for v in row) for row in rows),
        note=(f"Top {CODES_SHOWN} codes per provider; recipients are shown by domain only."
              if rows else "No bounce in the last 24 hours."),
    )  # fmt: skip


def _summary(done: Intake) -> str:
    parts = [f"{done.received} messages read", f"{done.counted} events counted"]
    for count, what in (
        (done.duplicates, "duplicates skipped"),
        (done.not_events, "setup messages"),
        (done.invalid, "not SES events (left for the dead-letter queue)"),
        (done.not_deleted, "not deleted (they come back and are seen)"),
    ):
        if count:
            parts.append(f"{count} {what}")
    return ", ".join(parts) + f"; {done.stopped}"


async def events_result(
    cfg: SesConfig, ctx: ProbeContext[SesResources], region: str
) -> ProbeResult:
    """The SES events part of a ``ses`` run (module doc)."""
    from exporter.probes.ses_sqs import poll_wait

    result = ProbeResult()
    deadline = time.monotonic() + ctx.timeout / 2
    queue: SqsQueue | None = None
    try:
        queue = await _queue(cfg, ctx.resources, ctx.timeout)
        depth = await queue.depth()
    except SqsCallError as exc:
        result.error = str(exc)
        queue = None
    if queue is not None:
        result.samples.append(sample(WAITING, depth.visible, region=region))
        waiting = f"{depth.visible} waiting, {depth.in_flight} in flight"
        if depth.dead_letter_queue is None:
            result.findings.append(Finding("ses_events_no_dead_letter_queue", waiting))
            waiting += ", no dead-letter queue"
        else:
            dlq = depth.dead_letter_queue.rsplit(":", 1)[-1]
            waiting += f", dead-letter queue {dlq} after {depth.max_receive_count} receives"
        result.details["events queue"] = waiting
    store = ctx.store
    if store is None:
        if queue is not None:
            result.details["events"] = "not read: a one-shot run does not consume the queue"
        return result
    if queue is not None:
        done = Intake()
        try:
            await intake(queue, store, region=region, dns=ctx.dns, wait=poll_wait(ctx.timeout),
                         deadline=deadline, retention=depth.retention, done=done)  # fmt: skip
        except (SqsCallError, StoreError) as exc:
            result.error = str(exc)
            done.stopped = "stopped by the error above"
        result.details["events"] = _summary(done)
        if done.invalid_reasons:
            reasons = ", ".join(f"{r} ({n})" for r, n in done.invalid_reasons.most_common(3))
            result.details["invalid messages"] = reasons
            ctx.log.warning(
                "messages that are not SES events in the events queue",
                extra={"probe": "ses", "target": region, "reasons": reasons},
            )
    try:
        result.samples += await counter_samples(store, region)
        result.tables.append(await codes_table(store, region, time.time()))
    except StoreError as exc:
        result.error = f"{result.error}; {exc}" if result.error else str(exc)
    return result
