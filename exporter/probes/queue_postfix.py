"""Postfix's queue as ``postqueue -j`` lists it: depth and oldest message per queue, and why mail
is deferred.

``postqueue -j`` (Postfix 3.1 and later, postqueue(1)) prints one JSON object per queued message
and line: ``queue_name``, ``queue_id``, ``arrival_time`` (Unix time), ``message_size``,
``sender``, and ``recipients``, each with ``address`` and, when delivery was deferred,
``delay_reason``. It is run as a subprocess (``postqueue -c DIR -j`` for ``postfix_config_dir``)
with a deadline and a cap on what it may print, and its output is read as a stream, one line at
a time, so a queue of a million messages is counted, never held in memory.

Hand-written, and why: each line is parsed by :func:`json.loads`; what is written here is the
streaming, the checks of each object's shape, and the grouping of deferral reasons.
``delay_reason`` is free text written by Postfix's SMTP client (``connect to HOST[ADDR]:PORT:
Connection refused``, ``host HOST[ADDR] said: 450 4.7.1 ...``, ``Host or domain name not found.
Name service error for name=... type=MX: ...``); no library reads it, so :func:`deferral_key`
picks the remote host and the status out of the forms the Postfix source writes, and falls
back to the text itself. Mail addresses in reasons are shortened to their domain
(``<…@example.com>``): a status page is no place for customers' addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
from collections import Counter
from dataclasses import dataclass, field

from exporter.redact import scrub_sasl

QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")
"""The queues ``postqueue -j`` lists (``maildrop``: submitted with sendmail, not yet picked up)."""

SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin", "/opt/local/sbin")
"""Where ``postqueue`` is looked for after ``PATH`` (a non-root ``PATH`` often lacks sbin)."""

MAX_OUTPUT_BYTES = 512 * 1024 * 1024
"""What postqueue may print (about a million messages); more is 'could not tell'."""
MAX_LINE_BYTES = 16 * 1024 * 1024
"""One message's line (a message with tens of thousands of recipients fits)."""
MAX_LINE_CONTAINERS = 250_000
"""JSON objects and arrays in one line: one per recipient (a message to 250,000 recipients)."""
MAX_STDERR_BYTES = 64 * 1024
MAX_REASON_KEYS = 1000
"""Distinct (remote host, status) pairs counted one by one; the rest are counted together."""
MAX_KNOWN_REASONS = 10_000
"""Reason texts whose (remote host, status) is remembered during one listing (they repeat)."""
MAX_KNOWN_REASON_CHARS = 1_000_000
"""... and their characters in all: 10,000 distinct reasons of 16 KB held 228 MiB."""
MAX_REASON_CHARS = 2048
"""Of one ``delay_reason`` (a remote server's reply quoted by Postfix: a line of 512 octets in
RFC 5321, a few lines in practice); the rest is dropped as the line is parsed."""
OTHER = ("(other)", "(more distinct reasons than counted)")


class PostqueueFormatError(ValueError):
    """A line of postqueue's output is not a message object as postqueue(1) describes it."""


class PostqueueError(Exception):
    """postqueue could not list the queue: ``reason`` says what happened, ``fix`` what to do."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(f"{reason}; fix: {fix}")
        self.reason = reason
        self.fix = fix


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    queue: str
    arrival_time: float
    delay_reasons: tuple[str, ...]
    """One entry per recipient that has a ``delay_reason``."""


MAX_ARRIVAL = 2**40
"""Beyond any time a queue file can have (year 36812); more is not a Unix time."""


def parse_line(line: bytes | str) -> QueuedMessage:
    """One line of ``postqueue -j``; raises :class:`PostqueueFormatError` for anything else."""
    raw = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
    # Counted before parsing (bytes.count is C-fast): 16 MiB of "{}," is 5.6 million dicts,
    # 408 MiB to parse. Braces in reason texts count too: a generous bound, never a small one.
    if raw.count(b"{") + raw.count(b"[") > MAX_LINE_CONTAINERS:
        raise PostqueueFormatError(
            f"more than {MAX_LINE_CONTAINERS} JSON objects and arrays in one message"
        )
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise PostqueueFormatError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise PostqueueFormatError("not a JSON object")
    queue = obj.get("queue_name")
    if not isinstance(queue, str) or queue not in QUEUES:
        # Any other name would become a queue label with a count postqueue never meant.
        raise PostqueueFormatError("queue_name missing or not one of " + " ".join(QUEUES))
    arrival = obj.get("arrival_time")
    if isinstance(arrival, bool) or not isinstance(arrival, int | float):
        raise PostqueueFormatError("arrival_time missing or not a number")
    # Infinity, NaN and 400-digit integers are valid JSON for Python (the last one crashed
    # float()); a time_t of Postfix is none of them, nor before 1970.
    if not 0 <= arrival <= MAX_ARRIVAL:
        raise PostqueueFormatError("arrival_time is not a Unix time")
    recipients = obj.get("recipients", [])
    if not isinstance(recipients, list):
        raise PostqueueFormatError("recipients is not a list")
    reasons: list[str] = []
    for rcpt in recipients:
        if not isinstance(rcpt, dict):
            raise PostqueueFormatError("a recipient is not an object")
        reason = rcpt.get("delay_reason")
        if reason is None:
            continue
        if not isinstance(reason, str):
            raise PostqueueFormatError("delay_reason is not a string")
        reasons.append(reason[:MAX_REASON_CHARS])
    return QueuedMessage(queue, float(arrival), tuple(reasons))


# ----- deferral reasons --------------------------------------------------------------------------

# Reasons are remote servers' text: every pattern that is searched (not matched at the start)
# begins with a look-behind, so that a match is only tried where a token starts. Without it, a
# 2 KB reason of one long token cost 33 ms (each position scanned to the token's end).
_LOCAL = r"[^\s<>\"'(),;:@\[\]]"
_ADDRESS = re.compile(rf"(?<!{_LOCAL}){_LOCAL}+@(?=[A-Za-z0-9])")
_HOST = r"(?P<host>[^\s\[\]]+)\[(?P<addr>[^\]]{0,100})\]"
_HOST_ANYWHERE = re.compile(r"(?<![^\s\[\]])" + _HOST)
_CODE = r"(?P<code>[245]\d\d)(?:[ -](?P<ext>[245]\.\d{1,3}\.\d{1,3}))?"
_FORMS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(rf"connect to {_HOST}(?::\d+)?: (?P<status>.+)"), "{status}"),
    (re.compile(rf"host {_HOST} said: {_CODE}"), "{code} {ext}"),
    (re.compile(rf"host {_HOST} refused to talk to me: {_CODE}"), "greeting {code} {ext}"),
    (re.compile(rf"SASL authentication failed; server {_HOST} said: {_CODE}"),
     "SASL authentication failed {code} {ext}"),
    (re.compile(rf"(?P<what>lost connection|conversation) with {_HOST} (?P<status>.+)"),
     "{what} {status}"),
    (re.compile(r"Host or domain name not found\. Name service error for name=(?P<host>\S+)"
                r" type=(?P<type>\S+): (?P<status>.+)"), "DNS {type}: {status}"),
    (re.compile(rf"TLS is required, but (?P<status>.*?)(?: by)? host {_HOST}"),
     "TLS required, but {status}"),
)  # fmt: skip
_STATUS_MAX = 100


def redact(reason: str) -> str:
    """The reason with every mail address's local part replaced by ``…`` (its domain stays),
    and any SASL credentials a remote server quoted back (``AUTH PLAIN <base64>``) removed: they
    are Postfix's relay password, which the exporter never read and so cannot know."""
    reason = scrub_sasl(reason)
    return _ADDRESS.sub("…@", reason) if "@" in reason else reason


def printable_reason(reason: str) -> str:
    """The reason as it may be shown: :func:`redact`-ed, every control character (an escape
    sequence from a remote server's reply would reach the terminal ``check`` prints to) and
    run of white space made one space."""
    text = redact(reason)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(text.split())


def deferral_key(reason: str) -> tuple[str, str]:
    """(remote host, status) of one ``delay_reason``: the host as Postfix names it (its address
    when it has no name), the status as the SMTP code and enhanced code, the connection error,
    or the DNS error; ``("", text)`` for a reason of no known form."""
    text = printable_reason(reason).removeprefix("delivery temporarily suspended: ")
    for pattern, status in _FORMS:
        m = pattern.match(text)
        if m is None:
            continue
        groups = {k: v or "" for k, v in m.groupdict().items()}
        host = groups.get("host", "")
        if groups.get("addr") and host in ("unknown", ""):
            host = groups["addr"]
        shown = status.format(**groups).strip().partition(" (in reply to ")[0]
        return host, shown[:_STATUS_MAX]
    host_match = _HOST_ANYWHERE.search(text)
    return (host_match.group("host") if host_match else ""), text[:_STATUS_MAX]


@dataclass(frozen=True)
class DeferralReason:
    remote: str
    status: str
    recipients: int
    example: str


@dataclass
class PostfixQueue:
    """What one listing of the queue showed."""

    depth: dict[str, int] = field(default_factory=lambda: dict.fromkeys(QUEUES, 0))
    oldest_arrival: dict[str, float] = field(default_factory=dict)
    deferred_recipients: int = 0
    warnings: list[str] = field(default_factory=list)
    """postqueue's warnings (e.g. 'Mail system is down -- accessing queue directly')."""
    _reasons: Counter[tuple[str, str]] = field(default_factory=Counter, init=False, repr=False)
    _examples: dict[tuple[str, str], str] = field(default_factory=dict, init=False, repr=False)
    _keys: dict[str, tuple[str, str]] = field(default_factory=dict, init=False, repr=False)
    _known_chars: int = field(default=0, init=False, repr=False)

    def add(self, msg: QueuedMessage) -> None:
        self.depth[msg.queue] = self.depth.get(msg.queue, 0) + 1
        oldest = self.oldest_arrival.get(msg.queue)
        if oldest is None or msg.arrival_time < oldest:
            self.oldest_arrival[msg.queue] = msg.arrival_time
        if msg.queue != "deferred":
            return
        for reason in msg.delay_reasons:
            self.deferred_recipients += 1
            key = self._keys.get(reason)
            if key is None:
                key = deferral_key(reason)
                if (
                    len(self._keys) < MAX_KNOWN_REASONS
                    and self._known_chars + len(reason) <= MAX_KNOWN_REASON_CHARS
                ):
                    self._keys[reason] = key
                    self._known_chars += len(reason)
            if key not in self._reasons and len(self._reasons) >= MAX_REASON_KEYS:
                key = OTHER
            self._reasons[key] += 1
            if key not in self._examples:
                self._examples[key] = printable_reason(reason)[:300]

    def top_reasons(self, n: int = 10) -> list[DeferralReason]:
        """The ``n`` most frequent deferral reasons of the deferred queue, by recipients."""
        return [
            DeferralReason(remote, status, count, self._examples[(remote, status)])
            for (remote, status), count in self._reasons.most_common(n)
        ]


# ----- running postqueue -------------------------------------------------------------------------


def postqueue_command(postqueue_path: str | None, config_dir: str | None) -> list[str]:
    """The argv to run; raises :class:`PostqueueError` when no postqueue can be found."""
    if postqueue_path is not None:
        binary = postqueue_path
    else:
        path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
        found = shutil.which("postqueue", path=path)
        if found is None:
            raise PostqueueError(
                "postqueue not found (looked in PATH and " + ", ".join(SBIN_DIRS) + ")",
                "run the exporter on the Postfix host (or in its container) where Postfix's"
                " postqueue is installed, or give its location in postqueue_path",
            )
        binary = found
    return [binary, *(("-c", config_dir) if config_dir else ()), "-j"]


CHILD_ENVIRONMENT = ("PATH", "MAIL_CONFIG", "TZ", "LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES")
"""What postqueue is given of the exporter's environment: it needs none of the secrets there
(``password_env`` variables, AWS credentials); ``MAIL_CONFIG`` is postqueue's own."""


def child_environment() -> dict[str, str]:
    return {k: v for k in CHILD_ENVIRONMENT if (v := os.environ.get(k)) is not None}


def _failure(command: list[str], returncode: int, stderr: str) -> PostqueueError:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = next((line for line in lines if "fatal:" in line), lines[-1] if lines else "")
    shown = " ".join(command)
    fatal = printable_reason(fatal)
    if returncode < 0:  # asyncio's way of saying a signal ended it
        try:
            how = f"was killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with status {returncode}"
    reason = f"{shown} {how}" + (f": {fatal[:300]}" if fatal else "")
    low = fatal.lower()
    if "mail system is down" in low:
        fix = ("start Postfix ('postfix start'); only root can list the queue of a stopped"
               " Postfix")  # fmt: skip
    elif "alternate_config_directories" in low or "main.cf" in low:
        fix = ("a user other than root may use 'postqueue -c DIR' only for a DIR listed in"
               " alternate_config_directories of the default main.cf; add it there, or run"
               " the exporter where DIR is the default configuration")  # fmt: skip
    elif "permission denied" in low:
        fix = (
            "postqueue must run setgid postdrop to reach the showq service: check"
            " 'ls -l $(command -v postqueue)' shows r-xr-sr-x root postdrop, and that the"
            " container does not set no-new-privileges or mount it nosuid (README, Queues)"
        )
    elif "invalid option" in low or "usage:" in low:
        fix = "postqueue -j needs Postfix 3.1 or later; upgrade Postfix"
    else:
        fix = f"run '{shown}' by hand as the exporter's user to see what is wrong"
    return PostqueueError(reason, fix)


async def _collect(stream: asyncio.StreamReader, cap: int) -> bytes:
    """Read a stream to its end, keeping only its first ``cap`` bytes."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < cap:
            kept += chunk[: cap - len(kept)]
    return bytes(kept)


async def list_queue(
    command: list[str],
    *,
    time_limit: float,
    max_output: int = MAX_OUTPUT_BYTES,
    max_line: int = MAX_LINE_BYTES,
) -> PostfixQueue:
    """Run postqueue and count what it lists; raises :class:`PostqueueError` (could not tell)."""
    shown = " ".join(command)
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            env=child_environment(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=max_line,
        )
    except FileNotFoundError:
        raise PostqueueError(
            f"{command[0]} not found", "give the path of Postfix's postqueue in postqueue_path"
        ) from None
    except PermissionError:
        raise PostqueueError(
            f"not allowed to run {command[0]}",
            "make postqueue executable for the exporter's user (it is r-xr-sr-x root postdrop"
            " in a Postfix install)",
        ) from None
    assert proc.stdout is not None and proc.stderr is not None
    stderr_task = asyncio.ensure_future(_collect(proc.stderr, MAX_STDERR_BYTES))
    queue = PostfixQueue()
    try:
        async with asyncio.timeout(time_limit):
            read = 0
            while True:
                try:
                    line = await proc.stdout.readline()
                except ValueError:  # a line longer than the stream's limit
                    raise PostqueueError(
                        f"{shown} printed a line longer than {max_line // 1024} KiB",
                        "check that postqueue_path is Postfix's postqueue",
                    ) from None
                if not line:
                    break
                read += len(line)
                if read > max_output:
                    raise PostqueueError(
                        f"{shown} printed more than {max_output // (1024 * 1024)} MiB; the queue"
                        " is too large to list",
                        "look at the queue with 'qshape deferred' and clear what is stuck",
                    )
                if line.strip():
                    try:
                        queue.add(parse_line(line))
                    except PostqueueFormatError as exc:
                        raise PostqueueError(
                            f"{shown} printed a line that is not a queued message ({exc})",
                            "check that postqueue_path is Postfix's postqueue (3.1 or later)",
                        ) from None
            returncode = await proc.wait()
            stderr = (await stderr_task).decode(errors="replace")
    except TimeoutError:
        raise PostqueueError(
            f"{shown} did not finish within {time_limit:g}s",
            "raise the entry's timeout; a very large queue takes long to list",
        ) from None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if not stderr_task.done():
            stderr_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stderr_task
    if returncode != 0:
        raise _failure(command, returncode, stderr)
    queue.warnings = [
        printable_reason(line)[:300] for line in stderr.splitlines() if "warning:" in line
    ][:5]
    return queue
