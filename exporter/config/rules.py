"""Checks of a validated config that look at more than one field: the minimum interval of each
probe kind, and ``tls`` entries that probe the same server twice. Each problem names its key path.

Minimum intervals (:data:`MIN_INTERVALS`) protect the servers we probe and the exporter itself
(``interval: 1ms`` was accepted: 45% CPU and ~930 log lines a second). ``global.interval`` counts
for the kinds whose sections leave ``interval`` unset. ``global.allow_short_intervals: true``
lifts them, for labs and tests whose servers all run on loopback; never against real servers.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from exporter.net.addr import split_host_port

if TYPE_CHECKING:
    from exporter.config import Config

MIN_INTERVALS: dict[str, tuple[float, str]] = {
    "dns": (60.0, "resolvers cache answers for their TTL, rarely under 5m: a shorter interval "
                  "re-reads the cache"),
    "dnsbl": (300.0, "blacklist operators limit query volume (Spamhaus answers 127.255.255.x to "
                     "excessive queriers) and listings change over hours"),
    "tls": (60.0, "every run opens an SMTP connection to the server; more often trips its rate "
                  "limits (postscreen, fail2ban)"),
    "ses": (60.0, "SES and CloudWatch statistics have one-minute resolution, and every run makes "
                  "API calls (GetMetricData is billed)"),
    "roundtrip": (60.0, "every run sends a real message through the mail system"),
    "mta_sts": (300.0, "senders cache the policy for max_age (days), and every run fetches it "
                       "from the policy host over HTTPS"),
    "queue": (30.0, "postqueue reads every queue file and Redis answers every run; queues that "
                    "matter move over minutes"),
    "reports": (60.0, "every run logs in to the mailbox; reporters send once a day"),
}  # fmt: skip
"""Per probe kind: the shortest ``interval`` accepted, and why."""


def format_seconds(seconds: float) -> str:
    """60 -> '1m', 90 -> '1m30s', 0.001 -> '1ms': the config's own duration syntax."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    out = ""
    rest = seconds
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if rest >= size:
            count = int(rest // size)
            out += f"{count}{unit}"
            rest -= count * size
    return out + (f"{rest:g}s" if rest or not out else "")


def _sections(config: Config) -> Iterator[tuple[str, str, Any]]:
    """(probe kind, key path, section) of every section with its own ``interval`` key."""
    for i, d in enumerate(config.domains):
        yield "dns", f"domains[{i}]", d
    if config.blacklists is not None:
        yield "dnsbl", "blacklists", config.blacklists
    for i, t in enumerate(config.tls):
        yield "tls", f"tls[{i}]", t
    for i, s in enumerate(config.ses):
        yield "ses", f"ses[{i}]", s
    for i, r in enumerate(config.roundtrip):
        yield "roundtrip", f"roundtrip[{i}]", r
    if config.mta_sts is not None:
        yield "mta_sts", "mta_sts", config.mta_sts
    for i, q in enumerate(config.queues):
        yield "queue", f"queues[{i}]", q
    for i, mailbox in enumerate(config.reports):
        yield "reports", f"reports[{i}]", mailbox


def interval_problems(config: Config) -> list[str]:
    if config.global_.allow_short_intervals:
        return []
    problems: list[str] = []
    global_users: dict[str, list[str]] = {}
    for kind, path, section in _sections(config):
        minimum, why = MIN_INTERVALS[kind]
        if section.interval is None:
            if config.global_.interval < minimum:
                global_users.setdefault(kind, []).append(path)
        elif section.interval < minimum:
            problems.append(
                f"{path}.interval: {format_seconds(section.interval)} is below the {kind} "
                f"probe's minimum of {format_seconds(minimum)} ({why})"
            )
    for kind, paths in global_users.items():
        minimum, why = MIN_INTERVALS[kind]
        users = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        problems.append(
            f"global.interval: {format_seconds(config.global_.interval)} is below the {kind} "
            f"probe's minimum of {format_seconds(minimum)}, and {users} use it ({why})"
        )
    return problems


def _endpoint(target: str) -> str:
    """'MAIL.example.com.:25' and 'mail.example.com:25' -> the same key."""
    host, port = split_host_port(target)
    host = host.strip().rstrip(".").lower()
    with contextlib.suppress(ValueError):
        host = str(ipaddress.ip_address(host))
    return f"{host}:{port}"


def duplicate_tls_problems(entries: Iterable[Any]) -> list[str]:
    seen: dict[str, int] = {}
    problems: list[str] = []
    for i, entry in enumerate(entries):
        if entry.target is not None:
            key, field, value = "target:" + _endpoint(entry.target), "target", entry.target
        else:
            key, field, value = "mx:" + entry.mx_of, "mx_of", entry.mx_of
        first = seen.setdefault(key, i)
        if first != i:
            problems.append(
                f"tls[{i}].{field}: {value!r} is already probed by tls[{first}] (one entry per "
                "server; the daemon would keep one of them)"
            )
    return problems


def config_problems(config: Config) -> list[str]:
    """Every problem of ``config`` that its models cannot see one field at a time."""
    return duplicate_tls_problems(config.tls) + interval_problems(config)
