"""The ``roundtrip`` probe: send a tagged message through SMTP and wait for it over IMAP.

One target per ``roundtrip`` entry. A run:

1. opens one IMAP connection per watched folder (the mailbox and, if configured, the spam
   folder), logs in and selects it; if that fails nothing is sent (no message would be cleaned);
2. deletes earlier probe messages still there (late arrivals of timed-out runs): found by
   ``SEARCH HEADER X-Deliverability-Probe "<name>/"`` and then checked exactly, because IMAP
   header search is a case-insensitive substring match ("b/" also matches "ab/...");
3. enters IDLE on each folder (or polls every ``poll_interval`` without IDLE), then submits the
   message over SMTP (STARTTLS, implicit TLS or plain; AUTH when a username is set);
4. waits for the server's push, searches for its own id, and when found reads
   ``Authentication-Results``, deletes exactly its own message(s) and reports.

Host names are resolved through the exporter's DNS client (the configured nameservers) and the
certificate is verified against the configured host name. Failures are findings by phase
(connect, TLS, SMTP auth, SMTP rejection with its code, IMAP login, not delivered). The whole
run stays inside the target's timeout: it stops waiting early enough to clean up and log out.
Passwords are read at run time and never appear in an error, a detail or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import email.utils
import re
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser

import aiosmtplib

from exporter.config import Config, ImapConfig, RoundtripConfig
from exporter.findings import CRITICAL
from exporter.net.imap import (
    ImapClient,
    ImapCommandError,
    ImapConnectError,
    ImapError,
    ImapLoginError,
    ImapTlsError,
    quote,
)
from exporter.net.network import Network
from exporter.net.submission import (
    helo_name,
    login,
    one_line,
    os_reason,
    rejection,
    ssl_reason,
    tcp_connect,
)
from exporter.net.tlsctx import verifying_context
from exporter.probes.base import ProbeContext
from exporter.probes.roundtrip_authres import METHODS, RESULTS, verdicts
from exporter.results import Finding, ProbeResult, Target, sample, state_set
from exporter.storage import Store, StoreError

HEADER = "X-Deliverability-Probe"
IDLE_RECHECK = 30.0
"""Search even without a push this often (servers whose IDLE notifications lag)."""

_ID_RE = re.compile(r"([A-Za-z0-9._:@+-]{1,64})/([0-9a-f]{32})")
_FAILING = frozenset({"fail", "softfail", "permerror"})


SMTP_FAILURES = (aiosmtplib.SMTPException, OSError, EOFError)
"""What an SMTP submission can fail with: the server's replies and disconnects (aiosmtplib),
the network and TLS (OSError covers ssl.SSLError, ConnectionError and TimeoutError). Anything
else is a bug and reaches the runner, which logs its traceback."""


class _Stop(Exception):
    """Ends a run early; the result already holds the reason."""


@dataclass
class _Watcher:
    """One folder watched over its own IMAP connection."""

    folder: str
    spam: bool
    client: ImapClient

    async def matching(self, name: str, criteria_value: str, exact: str | None) -> dict[int, bytes]:
        """UIDs whose probe header is really ours (name, and id when ``exact``) -> header bytes."""
        uids = await self.client.uid_search(f"HEADER {HEADER} {quote(criteria_value)}")
        if not uids:
            return {}
        headers = await self.client.fetch_header_fields(uids, (HEADER, "Authentication-Results"))
        ours: dict[int, bytes] = {}
        for uid, raw in headers.items():
            if uid in uids and _is_ours(raw, name, exact):
                ours[uid] = raw
        return ours


def _header_values(raw: bytes, field_name: str) -> list[str]:
    msg = BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    return [re.sub(r"\s+", " ", str(v)).strip() for v in msg.get_all(field_name) or []]


def _is_ours(raw: bytes, name: str, exact: str | None) -> bool:
    for value in _header_values(raw, HEADER):
        m = _ID_RE.fullmatch(value)
        if m and m.group(1) == name and (exact is None or value == exact):
            return True
    return False


@dataclass
class _Run:
    cfg: RoundtripConfig
    ctx: ProbeContext[RoundtripState]
    timeout: float
    result: ProbeResult = field(default_factory=ProbeResult)
    probe_id: str = ""
    watchers: list[_Watcher] = field(default_factory=list)
    clients: list[ImapClient] = field(default_factory=list)
    phase: str = "start"
    success: bool = False

    def __post_init__(self) -> None:
        self.probe_id = f"{self.cfg.name}/{uuid.uuid4().hex}"
        self.loop = asyncio.get_running_loop()
        self.start = self.loop.time()
        reserve = min(max(0.2 * self.timeout, 0.3), 20.0)
        self.wait_deadline = self.start + self.timeout - reserve
        self.hard_deadline = self.start + self.timeout - reserve / 3
        self.op_timeout = max(1.0, min(30.0, self.timeout / 3))

    # ----- reporting -------------------------------------------------------------------------

    def finding(self, code: str, evidence: str, subject: str = "", severity: str | None = None,
                error: bool = True) -> None:  # fmt: skip
        self.result.findings.append(Finding(code, evidence, subject=subject, severity=severity))
        if error and self.result.error is None:
            self.result.error = evidence

    def sample(self, metric: str, value: float | bool) -> None:
        self.result.samples.append(sample(metric, value, target=self.cfg.name))

    # ----- the run ---------------------------------------------------------------------------

    async def execute(self) -> ProbeResult:
        self.result.details["probe_id"] = self.probe_id
        try:
            async with asyncio.timeout_at(self.hard_deadline):
                await self._steps()
        except _Stop:
            pass
        except TimeoutError:
            self.finding(
                "roundtrip_connect_failed",
                f"{self.phase}: timed out (the run's timeout is {self.timeout:g}s)",
                subject=self.phase.split(" ")[0],
            )
        except BaseException:
            for c in self.clients:
                c.close()
            raise
        try:
            await self._logout_all()
        finally:
            for c in self.clients:
                c.close()
        self.sample("roundtrip_success", self.success)
        return self.result

    async def _steps(self) -> None:
        cfg = self.cfg
        try:
            smtp_password = cfg.smtp.read_secret(f"roundtrip {cfg.name}: smtp")
            imap_password = cfg.imap.read_secret(f"roundtrip {cfg.name}: imap") or ""
        except ValueError as exc:
            self.result.error = str(exc)
            raise _Stop from None
        await self._open_watchers(imap_password)
        try:
            self.phase = "imap cleanup"
            stale = 0
            for w in self.watchers:
                stale += await self._delete(w, await w.matching(cfg.name, f"{cfg.name}/", None))
            self.sample("roundtrip_stale_messages_deleted", stale)
            self.phase = "imap idle"
            for w in self.watchers:
                if w.client.can_idle:
                    await w.client.idle_start()
            self.result.details["imap_mode"] = (
                "idle" if all(w.client.can_idle for w in self.watchers) else "poll"
            )
        except ImapError as exc:
            self._imap_failure(exc)
            raise _Stop from None
        send_start = self.loop.time()
        await self._send(smtp_password, send_start)
        self.phase = "imap wait"
        try:
            found = await self._wait()
            if found is None:
                self.finding(
                    "roundtrip_not_delivered",
                    f"message {self.probe_id} not found in "
                    + " or ".join(w.folder for w in self.watchers)
                    + f" within {self.wait_deadline - send_start:.1f}s of sending",
                    error=False,
                )
                return
            watcher, hits, seen_at = found
            self._report_found(watcher, hits, seen_at - send_start)
            self.phase = "imap delete"
            await self._delete(watcher, hits)
        except ImapError as exc:
            self._imap_failure(exc)
            raise _Stop from None

    # ----- IMAP ------------------------------------------------------------------------------

    async def _open_watchers(self, password: str) -> None:
        imap = self.cfg.imap
        folders = [(imap.mailbox, False)]
        if imap.spam_folder and imap.spam_folder != imap.mailbox:
            folders.append((imap.spam_folder, True))
        self.phase = "imap connect"
        addresses = await self._resolve(imap.host, "imap")
        ssl_ctx = await verifying_context(imap.ca_file) if imap.security != "none" else None
        outcomes = await asyncio.gather(
            *(self._open_one(imap, addresses, ssl_ctx, password) for _ in folders),
            return_exceptions=True,
        )
        clients: list[ImapClient] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                if isinstance(outcome, ImapError):
                    self._imap_failure(outcome)
                    raise _Stop
                raise outcome
            clients.append(outcome)
        self.phase = "imap select"
        for (folder, spam), client in zip(folders, clients, strict=True):
            try:
                await client.select(folder)
            except ImapCommandError as exc:
                if not spam or client.broken:
                    self._imap_failure(exc, f"cannot open {folder}: ")
                    raise _Stop from None
                self.finding(
                    "roundtrip_spam_folder_missing", f"imap: {exc}", subject=folder, error=False
                )
                await client.logout()
                continue
            except ImapError as exc:
                self._imap_failure(exc)
                raise _Stop from None
            self.watchers.append(_Watcher(folder, spam, client))

    async def _open_one(
        self, imap: ImapConfig, addresses: list[str], ssl_ctx: ssl.SSLContext | None, password: str
    ) -> ImapClient:
        last: ImapError = ImapConnectError("no address")
        for address in addresses:
            try:
                client = await ImapClient.open(
                    address,
                    imap.port,
                    security=imap.security,
                    server_hostname=imap.host,
                    ssl_context=ssl_ctx,
                    op_timeout=self.op_timeout,
                )
            except ImapConnectError as exc:
                last = exc
                continue
            self.clients.append(client)  # closed at the end of the run, whatever happens
            await client.login(imap.username, password)
            return client
        raise last

    def _imap_failure(self, exc: ImapError, prefix: str = "") -> None:
        where = f"imap {self.cfg.imap.host}:{self.cfg.imap.port}"
        evidence = f"{where}: {prefix}{exc}"
        if isinstance(exc, ImapLoginError):
            self.finding("roundtrip_imap_login_failed", evidence, subject="imap")
        elif isinstance(exc, ImapTlsError):
            self.finding("roundtrip_tls_failed", evidence, subject="imap")
        else:
            self.finding("roundtrip_connect_failed", evidence, subject="imap")

    async def _delete(self, watcher: _Watcher, hits: dict[int, bytes]) -> int:
        if not hits:
            return 0
        expunged = await watcher.client.delete(hits)
        if not expunged:
            self.result.details[f"cleanup_{watcher.folder}"] = (
                "flagged \\Deleted but not expunged: the server lacks UIDPLUS and other messages"
                " are flagged \\Deleted"
            )
        return len(hits)

    async def _wait(self) -> tuple[_Watcher, dict[int, bytes], float] | None:
        tasks = {asyncio.create_task(self._watch(w)): w for w in self.watchers}
        pending = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    outcome = task.result()  # an ImapError propagates to the caller
                    if outcome is not None:
                        return tasks[task], outcome[0], outcome[1]
            return None
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # collects every outcome

    async def _watch(self, w: _Watcher) -> tuple[dict[int, bytes], float] | None:
        client = w.client
        poll = self.cfg.imap.poll_interval
        first = True
        while True:
            remaining = self.wait_deadline - self.loop.time()
            if client.can_idle:
                await client.idle_wait(max(0.0, min(remaining, IDLE_RECHECK)))
                await client.idle_done()
            elif not first:
                await asyncio.sleep(max(0.0, min(remaining, poll)))
            first = False
            hits = await w.matching(self.cfg.name, self.probe_id, self.probe_id)
            if hits:
                return hits, self.loop.time()
            if self.wait_deadline - self.loop.time() <= 0:
                return None
            if client.can_idle:
                await client.idle_start()

    def _report_found(self, w: _Watcher, hits: dict[int, bytes], duration: float) -> None:
        self.success = True
        self.sample("roundtrip_duration_seconds", duration)
        self.sample("roundtrip_spam", w.spam)
        self.result.details["found_in"] = w.folder
        if len(hits) > 1:
            self.result.details["copies"] = str(len(hits))
        if w.spam:
            self.finding(
                "roundtrip_in_spam", f"delivered to the spam folder {w.folder}", error=False
            )
        raw = next(iter(hits.values()))
        fields = _header_values(raw, "Authentication-Results")
        found, parsed = verdicts(fields)
        self.result.details["authentication_results"] = fields[0][:500] if fields else "absent"
        if parsed is None and fields:
            self.result.details["authentication_results_error"] = "unparseable"
        for method in METHODS:
            verdict = found.get(method)
            if verdict is None:
                continue
            self.result.samples.extend(
                state_set("roundtrip_auth_result", verdict, RESULTS, "result",
                          target=self.cfg.name, method=method)
            )  # fmt: skip
            if verdict in _FAILING:
                self.finding(
                    "roundtrip_auth_fail",
                    f"{method}={verdict} in Authentication-Results"
                    + (f" of {parsed.authserv_id}" if parsed else ""),
                    subject=method,
                    severity=CRITICAL if method == "dmarc" and verdict == "fail" else None,
                    error=False,
                )

    async def _logout_all(self) -> None:
        """Log out politely, within what is left of the run's timeout (the runner's own limit
        must never be the one that ends a run)."""
        budget = min(2.0, self.start + self.timeout - 0.05 - self.loop.time())

        async def one(client: ImapClient) -> None:
            try:
                async with asyncio.timeout(max(0.0, budget)):
                    await client.logout()
            except TimeoutError:
                client.close()

        await asyncio.gather(*(one(c) for c in self.clients), return_exceptions=True)

    # ----- SMTP ------------------------------------------------------------------------------

    async def _send(self, password: str | None, send_start: float) -> None:
        smtp = self.cfg.smtp
        where = f"smtp {smtp.host}:{smtp.port}"
        self.phase = "smtp connect"
        addresses = await self._resolve(smtp.host, "smtp")
        ssl_ctx = await verifying_context(smtp.ca_file) if smtp.security != "none" else None
        message = self._message()
        sock: socket.socket | None = None
        error = "no address"
        for address in addresses:
            try:
                sock = await tcp_connect(address, smtp.port, self.op_timeout)
                break
            except (OSError, TimeoutError) as exc:
                error = f"cannot connect to {address}: {os_reason(exc)}"
        if sock is None:
            self.finding("roundtrip_connect_failed", f"{where}: {error}", subject="smtp")
            raise _Stop
        client = aiosmtplib.SMTP(
            hostname=smtp.host,
            sock=sock,
            use_tls=smtp.security == "tls",
            start_tls=False,
            tls_context=ssl_ctx,
            timeout=self.op_timeout,
            local_hostname=helo_name(smtp.helo, self.cfg.from_),
        )
        try:
            await client.connect()
            await client.ehlo()
            if smtp.security == "starttls":
                self.phase = "smtp tls"
                if not client.supports_extension("starttls"):
                    self.finding(
                        "roundtrip_tls_failed", f"{where}: the server does not offer STARTTLS",
                        subject="smtp",
                    )  # fmt: skip
                    raise _Stop
                await client.starttls()
                await client.ehlo()
            if smtp.username:
                self.phase = "smtp auth"
                await login(client, smtp.username, password or "")
            self.phase = "smtp send"
            await client.send_message(message, sender=self.cfg.from_, recipients=[self.cfg.to])
        except _Stop:
            raise
        except SMTP_FAILURES as exc:  # what the network and the server can do to a submission
            client.close()
            sock.close()  # when the failure came before aiosmtplib took the socket over
            self._smtp_failure(exc, where)
            raise _Stop from None
        except BaseException:  # cancellation or a bug of ours: the runner logs the traceback
            client.close()
            sock.close()
            raise
        self.sample("roundtrip_send_duration_seconds", self.loop.time() - send_start)
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            async with asyncio.timeout(min(2.0, self.op_timeout)):
                await client.quit()
        client.close()

    def _smtp_failure(self, exc: Exception, where: str) -> None:
        tls_cause = isinstance(exc, ssl.SSLError) or isinstance(exc.__cause__, ssl.SSLError)
        if tls_cause:
            err = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
            assert isinstance(err, ssl.SSLError)
            self.finding(
                "roundtrip_tls_failed", f"{where}: TLS handshake failed: {ssl_reason(err)}",
                subject="smtp",
            )  # fmt: skip
            return
        if self.phase == "smtp auth" and isinstance(exc, aiosmtplib.SMTPResponseException):
            self.finding(
                "roundtrip_auth_failed",
                f"{where}: AUTH refused: {exc.code} {one_line(exc.message)}",
                subject="smtp",
            )
            return
        if self.phase == "smtp auth" and not isinstance(
            exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError | OSError
        ):
            self.finding(
                "roundtrip_auth_failed", f"{where}: cannot log in: {one_line(str(exc))}",
                subject="smtp",
            )  # fmt: skip
            return
        refused = rejection(exc)
        if refused is not None:
            code, text, stage = refused
            permanent = code >= 500
            self.finding(
                "roundtrip_send_rejected",
                f"{where}: {stage} rejected with {code} {text}",
                subject="smtp",
                severity=None if permanent else "warning",
                error=not permanent,  # a 5xx is a definite answer; a 4xx leaves it unknown
            )
            return
        self.finding(
            "roundtrip_connect_failed", f"{where}: {self.phase}: {one_line(str(exc))}",
            subject="smtp",
        )  # fmt: skip

    def _message(self) -> EmailMessage:
        cfg = self.cfg
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["Date"] = email.utils.format_datetime(datetime.now(UTC))
        msg["Message-ID"] = email.utils.make_msgid("roundtrip", domain=cfg.from_.rpartition("@")[2])
        msg["From"] = cfg.from_
        msg["To"] = cfg.to
        msg["Subject"] = f"Deliverability round trip {cfg.name}"
        msg[HEADER] = self.probe_id
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(
            "This message was sent by deliverability-exporter to measure that mail sent through\n"
            f"{cfg.smtp.host} arrives in this mailbox. It deletes it as soon as it is found.\n"
            f"Probe id: {self.probe_id}\n"
        )
        return msg

    # ----- shared ----------------------------------------------------------------------------

    async def _resolve(self, host: str, what: str) -> list[str]:
        """Addresses of a configured host through the exporter's DNS client (A, then AAAA)."""
        found = await self.ctx.dns.resolve_host(host)
        addresses = found.all
        if not addresses:
            problems = [f"{exc.rdtype}: {exc.reason}" for exc in found.failures]
            reason = "; ".join(problems) if problems else "no A or AAAA records"
            self.finding(
                "roundtrip_connect_failed", f"{what} {host}: cannot resolve: {reason}",
                subject=what,
            )  # fmt: skip
            raise _Stop
        return addresses


class RoundtripState:
    """Each round trip's last success, kept across runs (and failed runs) of one config and, when
    the daemon has a store, across reloads and restarts too (``roundtrip`` namespace)."""

    def __init__(self) -> None:
        self.last_success: dict[str, float] = {}

    async def last(self, name: str, store: Store | None) -> float | None:
        if name not in self.last_success and store is not None:
            kept = await store.transact(lambda tx: tx.get(STORE_NAMESPACE, name))
            if kept is not None:
                self.last_success[name] = float(kept)
        return self.last_success.get(name)

    async def succeeded(self, name: str, when: float, store: Store | None) -> None:
        self.last_success[name] = when
        if store is not None:
            await store.transact(lambda tx: tx.put(STORE_NAMESPACE, name, repr(when)))

    async def aclose(self) -> None:
        return None


STORE_NAMESPACE = "roundtrip.last_success"


class RoundtripProbe:
    """The probe kind: one target per ``roundtrip`` entry."""

    name = "roundtrip"
    title = "Round trip"
    config_key = "roundtrip"

    def targets(self, config: Config) -> list[Target[RoundtripConfig]]:
        return [Target.of(self.name, rt.name, rt, config) for rt in config.roundtrip]

    def resources(self, config: Config, net: Network) -> RoundtripState:
        return RoundtripState()

    async def run(
        self, target: Target[RoundtripConfig], ctx: ProbeContext[RoundtripState]
    ) -> ProbeResult:
        cfg = target.settings
        run = _Run(cfg, ctx, ctx.timeout)
        result = await run.execute()
        state = ctx.resources
        try:
            if run.success:
                await state.succeeded(cfg.name, time.time(), ctx.store)
            last = await state.last(cfg.name, ctx.store)
        except StoreError as exc:
            result.error = result.error or f"cannot keep the last success: {exc}"
            last = state.last_success.get(cfg.name)
        if last is not None:
            result.samples.append(
                sample("roundtrip_last_success_timestamp_seconds", last, target=cfg.name)
            )
        return result


PROBE = RoundtripProbe()
