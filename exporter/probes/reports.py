"""The ``reports`` probe: DMARC aggregate and TLS-RPT reports read from a mailbox, counted once.

One target per ``reports`` entry (one mailbox). A run:

1. connects to the IMAP server (TLS or STARTTLS; the host resolved through the exporter's DNS
   client, the certificate checked against the configured name), logs in, creates the
   processed and invalid folders when missing and selects the report folder;
2. reads up to ``max_messages`` messages, oldest first, one at a time (a message larger than
   ``max_message_bytes`` is not fetched), and parses each off the event loop
   (:mod:`exporter.reports`);
3. per message, in ONE store transaction: the counters of every report not seen before, the
   seen marks (reporter, report id, domain and period) and the per-source rows; then moves
   the message to the processed folder — or, when it holds no parseable report, counts it once
   as invalid and moves it to the invalid folder. Nothing is ever deleted. A crash between the
   commit and the move leaves the message in the folder: the next run finds its reports seen
   and only moves it;
4. whatever happened over IMAP, serves the stored counters, the failing-sources and
   newest-report gauges, the findings of the last 7 days and the "sources of the last 7 days"
   tables (PTR names looked up for a few new sources per run), all read from the store.

In ``check`` there is no store (``ctx.store`` is None): the folder is only examined (read-only)
and the number of messages waiting is reported; nothing is moved, counted or marked seen.

With several mailboxes the counters are shared (they have no target label, but
``reports_invalid_total``): every target serves the same stored values.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import dns.reversename

from exporter.config import Config, ReportsConfig
from exporter.net.dnsmodel import DnsTempError
from exporter.net.imap import ImapClient, ImapConnectError, ImapError
from exporter.net.network import Network
from exporter.net.tlsctx import verifying_context
from exporter.probes import reports_store as rs
from exporter.probes.base import NO_RESOURCES, NoResources, ProbeContext
from exporter.reports.archive import Limits, ReportError
from exporter.reports.mime import MessageReports, parse_message
from exporter.reports.tlsrpt import RESULT_TYPES
from exporter.results import Finding, ProbeResult, Table, Target, sample
from exporter.storage import Store, StoreError

FAILURE_SHARE = 0.10
"""A domain whose reports of the last 7 days show more DMARC failures than this is a finding."""
MIN_MESSAGES = 10
"""Below this many messages in the window the failure share is not judged."""
PTR_PER_RUN = 20
TABLE_ROWS = 50
FINDINGS_MAX = 20
PARSE_SHARE = 0.4
"""Share of the run's timeout one message's reports may take to parse."""


class _Stop(Exception):
    """Ends the mailbox part of a run; the result already holds the reason."""


@dataclass
class _Run:
    cfg: ReportsConfig
    ctx: ProbeContext[NoResources]
    target: str
    result: ProbeResult = field(default_factory=ProbeResult)
    client: ImapClient | None = None
    invalid_seen: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    """Parts that could not be read in messages that held reports (those were counted)."""

    def __post_init__(self) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.ctx.timeout
        self.op_timeout = max(1.0, min(30.0, timeout / 3))
        # Each message may take PARSE_SHARE of the timeout to parse (more: it is invalid), so
        # the last one starts early enough to finish, log out and read the store back within
        # the mailbox's 85%; a message that took longer than the run kept the folder wedged.
        self.batch_deadline = loop.time() + max(0.5, timeout * (0.8 - PARSE_SHARE))
        self.limits = Limits(
            message_bytes=self.cfg.max_message_bytes,
            parse_seconds=round(max(0.5, timeout * PARSE_SHARE), 1),
        )
        self.domains = [
            d for d in (self.cfg.domains or [x.domain for x in self.ctx.config.domains])
        ]

    def accept(self, domain: str) -> bool:
        return not self.domains or any(
            domain == d or domain.endswith("." + d) for d in self.domains
        )

    # ----- IMAP ------------------------------------------------------------------------------

    def imap_failure(self, exc: BaseException, prefix: str = "") -> None:
        imap = self.cfg.imap
        evidence = f"imap {imap.host}:{imap.port}: {prefix}{exc}"
        self.result.findings.append(Finding("reports_imap_failed", evidence, subject="imap"))
        self.result.error = self.result.error or evidence

    async def connect(self) -> ImapClient:
        imap = self.cfg.imap
        try:
            password = imap.read_secret(f"reports {self.cfg.name}: imap") or ""
        except ValueError as exc:
            self.result.error = str(exc)
            raise _Stop from None
        found = await self.ctx.dns.resolve_host(imap.host)
        if not found.all:
            reasons = "; ".join(f"{f.rdtype}: {f.reason}" for f in found.failures)
            self.imap_failure(ValueError(reasons or "no A or AAAA records"), "cannot resolve: ")
            raise _Stop
        ssl_ctx = await verifying_context(imap.ca_file) if imap.security != "none" else None
        last: ImapError = ImapConnectError("no address")
        for address in found.all:
            try:
                client = await ImapClient.open(
                    address, imap.port, security=imap.security, server_hostname=imap.host,
                    ssl_context=ssl_ctx, op_timeout=self.op_timeout,
                )  # fmt: skip
            except ImapConnectError as exc:
                last = exc
                continue
            self.client = client
            await client.login(imap.username, password)
            return client
        raise last

    async def mailbox(self) -> None:
        imap = self.cfg.imap
        try:
            client = await self.connect()
            if self.ctx.store is None:
                await client.examine(imap.folder)
                waiting = await client.uid_search("UNDELETED")
                self.result.details["waiting"] = str(len(waiting))
                self.result.details["mode"] = "check: nothing read, moved or counted"
                return
            for folder in (imap.processed_folder, imap.invalid_folder):
                if await client.ensure_folder(folder):
                    self.result.details[f"created_{folder}"] = "yes"
            await client.select(imap.folder)
            uids = await client.uid_search("UNDELETED")
            await self.batch(client, self.ctx.store, uids)
        except ImapError as exc:
            self.imap_failure(exc)
        except _Stop:
            pass
        finally:
            if self.client is not None:
                await _logout(self.client)

    async def batch(self, client: ImapClient, store: Store, uids: list[int]) -> None:
        imap = self.cfg.imap
        loop = asyncio.get_running_loop()
        todo = uids[: self.cfg.max_messages]
        sizes = await client.fetch_sizes(todo)
        totals = rs.Outcome()
        moved = {"processed": 0, "invalid": 0}
        done = 0
        for uid in todo:
            if loop.time() > self.batch_deadline:
                break
            found, digest = await self.read(client, uid, sizes.get(uid, 0))
            if found is None and digest is None:
                continue  # gone meanwhile (another reader moved it)
            now = time.time()
            try:
                if found is not None and not found.empty:
                    count = partial(rs.record_reports, found=found, accept=self.accept, now=now)
                    totals.add(await store.transact(count))
                    folder, kind = imap.processed_folder, "processed"
                else:
                    mark = partial(
                        rs.record_invalid, target=self.target, digest=digest or "", now=now
                    )
                    await store.transact(mark)
                    folder, kind = imap.invalid_folder, "invalid"
            except StoreError as exc:
                self.result.error = f"cannot count reports: {exc}"
                break  # the message stays in the folder for the next run
            if not await client.move([uid], folder):
                self.result.details["move"] = (
                    "copied, flagged \\Deleted but not expunged: the server lacks MOVE and"
                    " UIDPLUS and other messages are flagged \\Deleted"
                )
            moved[kind] += 1
            done += 1
        details = self.result.details
        details["messages_processed"] = str(moved["processed"])
        details["messages_invalid"] = str(moved["invalid"])
        details["messages_waiting"] = str(len(uids) - done)
        details["reports_counted"] = f"dmarc {totals.dmarc}, tlsrpt {totals.tlsrpt}"
        details["reports_already_counted"] = str(totals.duplicates)
        details["records_skipped"] = str(totals.records_skipped)
        if totals.records_skipped:
            shown = "; ".join(totals.skipped_in[:5])
            more = len(totals.skipped_in) - 5
            details["records_skipped"] += f": {shown}" + (
                f"; {more} more reports" if more > 0 else ""
            )
            self.ctx.log.warning(
                "report records skipped",
                extra={"probe": "reports", "target": self.target,
                       "records_skipped": totals.records_skipped, "reports": shown},
            )  # fmt: skip
        if self.unreadable:
            shown = "; ".join(self.unreadable[:3])
            details["parts_unreadable"] = f"{len(self.unreadable)}: {shown}"
            self.ctx.log.warning(
                "report mail parts unreadable",
                extra={"probe": "reports", "target": self.target, "parts": shown},
            )
        if totals.capped:
            details["reports_not_counted"] = (
                f"{totals.capped}: their domain would pass {rs.LabelCaps().domains} domains"
                " (label cap; see README)"
            )
            self.ctx.log.warning(
                "reports not counted: domain label cap",
                extra={"probe": "reports", "target": self.target, "reports": totals.capped},
            )
        if totals.ignored:
            details["reports_ignored"] = f"{totals.ignored} (domains not in {self.domains})"
        if moved["invalid"]:
            self.result.findings.append(
                Finding(
                    "reports_invalid_messages",
                    f"{moved['invalid']} message(s) moved to {imap.invalid_folder}: "
                    + "; ".join(self.invalid_seen[:3]),
                    subject=imap.invalid_folder,
                )
            )

    async def read(
        self, client: ImapClient, uid: int, size: int
    ) -> tuple[MessageReports | None, str | None]:
        """The message's reports (None when it holds none) and a digest identifying it."""
        if size > self.cfg.max_message_bytes:
            headers = await client.fetch_header_fields([uid], ("Message-ID", "Date", "From"))
            if uid not in headers:
                return None, None
            self.invalid_seen.append(f"UID {uid}: {size} bytes, over {self.cfg.max_message_bytes}")
            return None, _digest(headers[uid] + str(size).encode())
        raw = await client.fetch_message(uid, self.cfg.max_message_bytes + 4096)
        if raw is None:
            return None, None
        try:
            found = await asyncio.to_thread(parse_message, raw, self.limits)
        except ReportError as exc:
            self.invalid_seen.append(f"UID {uid}: {exc}")
            return None, _digest(raw)
        if found.empty:
            why = found.problems[0] if found.problems else "no report in the message"
            self.invalid_seen.append(f"UID {uid}: {why}"[:300])
            return found, _digest(raw)
        self.unreadable += (f"UID {uid}: {problem}"[:300] for problem in found.problems)
        return found, None


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _logout(client: ImapClient) -> None:
    try:
        async with asyncio.timeout(2.0):
            await client.logout()
    except TimeoutError:
        client.close()


# ----- what the store holds -------------------------------------------------------------------


async def _lookup_ptrs(ctx: ProbeContext[NoResources], store: Store, now: float) -> None:
    pending = await store.transact(lambda tx: rs.ptr_pending(tx, now, PTR_PER_RUN))
    if not pending:
        return

    async def one(ip: str) -> tuple[str, str] | None:
        try:
            answer = await ctx.dns.query(dns.reversename.from_address(ip).to_text(), "PTR")
        except DnsTempError:
            return None  # asked again next run
        names = sorted(rd.to_text().rstrip(".").lower() for rd in answer.rdatas)
        return ip, names[0] if names else ""

    found = [r for r in await asyncio.gather(*(one(ip) for ip in pending)) if r is not None]
    if found:
        await store.transact(lambda tx: rs.save_ptr(tx, dict(found), now))


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole}"


def _with_zeros(
    counters: dict[str, list[tuple[dict[str, str], float]]],
) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The stored counters plus, at 0, the sibling series a later report may start: every
    dmarc x disposition of a (domain, reporter), both results of a TLS (domain, reporter) and
    every RFC 8460 result type of a TLS domain. A counter series that first appears at its
    final value hides that first increase from increase() and rate(); one that was there at 0
    does not."""
    out = {name: list(series) for name, series in counters.items()}

    def pad(
        name: str, keys: set[tuple[tuple[str, str], ...]], add: dict[str, tuple[str, ...]]
    ) -> None:
        have = {tuple(sorted(lb.items())) for lb, _ in out.get(name, [])}
        for key in sorted(keys):
            base = dict(key)
            combos: list[dict[str, str]] = [base]
            for label, values in add.items():
                combos = [{**c, label: v} for c in combos for v in values]
            for labels in combos:
                if tuple(sorted(labels.items())) not in have:
                    out.setdefault(name, []).append((labels, 0.0))

    Key = tuple[tuple[str, str], ...]
    dmarc: set[Key] = {(("domain", lb["domain"]), ("reporter", lb["reporter"]))
             for lb, _ in counters.get(rs.DMARC_MESSAGES, [])}  # fmt: skip
    pad(rs.DMARC_MESSAGES, dmarc, {"dmarc": ("pass", "fail"),
                                   "disposition": ("none", "quarantine", "reject")})  # fmt: skip
    tls: set[Key] = {(("domain", lb["domain"]), ("reporter", lb["reporter"]))
           for lb, _ in counters.get(rs.TLS_SESSIONS, [])}  # fmt: skip
    pad(rs.TLS_SESSIONS, tls, {"result": ("success", "failure")})
    pad(rs.TLS_FAILURES, {key[:1] for key in tls},
        {"result_type": (*sorted(RESULT_TYPES), "other")})  # fmt: skip
    return out


def emit_stored(result: ProbeResult, snap: rs.Snapshot, target: str, now: float) -> None:
    """Samples, findings and tables from what the store holds."""
    for name, series in _with_zeros(snap.counters).items():
        for labels, value in series:
            if name == rs.INVALID and labels.get("target") != target:
                continue  # each mailbox serves its own
            result.samples.append(sample(name, value, **labels))
    if not any(lb.get("target") == target for lb, _ in snap.counters.get(rs.INVALID, [])):
        result.samples.append(sample(rs.INVALID, 0, target=target))
    domains = sorted({d for d, kind, _ in snap.last if kind == "dmarc"})
    failing: dict[str, int] = dict.fromkeys(domains, 0)
    totals: dict[str, list[int]] = {d: [0, 0] for d in domains}
    new_failing: list[rs.Source] = []
    for src in snap.sources:
        totals.setdefault(src.domain, [0, 0])
        totals[src.domain][0] += src.messages
        totals[src.domain][1] += src.dmarc_fail
        if src.dmarc_fail:
            failing[src.domain] = failing.get(src.domain, 0) + 1
            if src.first_seen >= now - rs.WINDOW_DAYS * rs.DAY:
                new_failing.append(src)
    for domain, count in sorted(failing.items()):
        result.samples.append(sample("dmarc_report_failing_sources", count, domain=domain))
    for domain, kind, ts in snap.last:
        result.samples.append(sample("report_last_timestamp_seconds", ts, domain=domain, kind=kind))
    for src in new_failing[:FINDINGS_MAX]:
        result.findings.append(Finding(
            "dmarc_report_new_failing_source",
            f"{src.ip}{f' ({src.ptr})' if src.ptr else ''} first listed {_day(src.first_seen)}:"
            f" {src.dmarc_fail} of {src.messages} messages fail DMARC for {src.domain}",
            subject=f"{src.domain} {src.ip}",
        ))  # fmt: skip
    for domain, (messages, fails) in sorted(totals.items()):
        if messages >= MIN_MESSAGES and fails > FAILURE_SHARE * messages:
            result.findings.append(Finding(
                "dmarc_report_failure_share_high",
                f"{fails} of {messages} messages ({100 * fails / messages:.0f}%) fail DMARC in"
                f" reports of the last {rs.WINDOW_DAYS} days",
                subject=domain,
            ))  # fmt: skip
    tls: dict[str, list[str]] = {}
    for domain, result_type, sessions in snap.tls_failures:
        if sessions:
            tls.setdefault(domain, []).append(f"{result_type}: {sessions}")
    for domain, kinds in sorted(tls.items()):
        result.findings.append(Finding(
            "tlsrpt_failure_sessions",
            f"failed TLS sessions in reports of the last {rs.WINDOW_DAYS} days: "
            + ", ".join(kinds),
            subject=domain,
        ))  # fmt: skip
    by_domain: dict[str, list[rs.Source]] = {}
    for src in snap.sources:
        by_domain.setdefault(src.domain, []).append(src)
    for domain, sources in sorted(by_domain.items()):
        rows = tuple(
            (s.ip, s.ptr or "-", str(s.messages), _share(s.spf_pass, s.messages),
             _share(s.dkim_pass, s.messages), _share(s.dmarc_fail, s.messages),
             _day(s.first_seen))
            for s in sources[:TABLE_ROWS]
        )  # fmt: skip
        more = len(sources) - TABLE_ROWS
        result.tables.append(Table(
            f"DMARC sources of the last {rs.WINDOW_DAYS} days: {domain}",
            ("source IP", "PTR", "messages", "SPF pass", "DKIM pass", "DMARC fail", "first seen"),
            rows,
            note=f"failing sources first; {more} more not shown" if more > 0
            else "failing sources first",
        ))  # fmt: skip


class ReportsProbe:
    """The probe kind: one target per ``reports`` entry."""

    name = "reports"
    title = "DMARC and TLS reports"
    config_key = "reports"

    def targets(self, config: Config) -> list[Target[ReportsConfig]]:
        return [Target.of(self.name, r.name, r, config) for r in config.reports]

    def resources(self, config: Config, net: Network) -> NoResources:
        return NO_RESOURCES

    async def run(
        self, target: Target[ReportsConfig], ctx: ProbeContext[NoResources]
    ) -> ProbeResult:
        run = _Run(target.settings, ctx, target.name)
        try:
            # The stored counts are served whatever happens to the mailbox: keep time for them.
            async with asyncio.timeout(max(1.0, ctx.timeout * 0.85)):
                await run.mailbox()
        except TimeoutError:
            run.imap_failure(TimeoutError(f"the mailbox took over {ctx.timeout * 0.85:.0f}s"))
        result = run.result
        store = ctx.store
        if store is None:
            return result
        now = time.time()
        try:
            await _lookup_ptrs(ctx, store, now)
            snap = await store.transact(lambda tx: rs.snapshot(tx, now))
        except StoreError as exc:
            result.error = result.error or f"cannot read the stored counts: {exc}"
            return result
        emit_stored(result, snap, target.name, now)
        return result


PROBE = ReportsProbe()
