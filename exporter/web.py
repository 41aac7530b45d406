"""The status pages: ``/`` (every target) and ``/target?probe=P&name=N`` (one target's history).

Plain server-rendered HTML with inline CSS: no scripts, no external assets, so the page works
through any proxy, on a phone, and with nothing but the exporter reachable. Every value that
comes from a probe or the config is escaped. Target settings are never rendered (they may name
secret files or variables); only what probes report — findings, evidence, errors — is shown,
and probes keep secrets out of those (SPEC.md).

Targets are listed worst first (critical, warning, not yet run, ok), each with its state, its
findings with the catalogue's explanation and fix, the evidence the probe saw, its last error,
the time and duration of its last run, and its next run. The detail page adds the recent
history of runs, like blackbox_exporter's "recent probes".
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from exporter import __version__
from exporter.findings import CRITICAL, INFO, WARNING
from exporter.report import OK, ReportFinding, target_status
from exporter.results import HISTORY, RunRecord, State, Target

PENDING = "pending"
_ORDER = {CRITICAL: 0, WARNING: 1, PENDING: 2, OK: 3}
_LABELS = {CRITICAL: "FAIL", WARNING: "WARN", PENDING: "PENDING", OK: "PASS"}

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;padding:1rem;
max-width:64rem;color:#1f2328;background:#fff;line-height:1.4}
h1{font-size:1.25rem;margin:.2rem 0}h2{font-size:1.05rem;margin:1.2rem 0 .4rem}
h3{font-size:.95rem;margin:.6rem 0 .2rem}
a{color:#0550ae}code,.ev{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
font-size:.85em;overflow-wrap:anywhere}
.meta{color:#59636e;font-size:.9em}
.summary span{display:inline-block;margin:.1rem .6rem .1rem 0}
.card{border:1px solid #d1d9e0;border-left-width:6px;border-radius:6px;padding:.6rem .8rem;
margin:.7rem 0}
.card.critical{border-left-color:#cf222e}.card.warning{border-left-color:#bf8700}
.card.ok{border-left-color:#1a7f37}.card.pending{border-left-color:#8c959f}
.head{display:flex;flex-wrap:wrap;gap:.3rem .6rem;align-items:baseline}
.name{font-weight:600;overflow-wrap:anywhere}
.badge{font-weight:700;font-size:.8em;padding:.05rem .45rem;border-radius:1rem;color:#fff}
.badge.critical{background:#cf222e}.badge.warning{background:#9a6700}
.badge.ok{background:#1a7f37}.badge.pending{background:#6e7781}
.sev{font-weight:700;font-size:.8em;text-transform:uppercase}
.sev.critical{color:#cf222e}.sev.warning{color:#9a6700}.sev.info{color:#0969da}
ul.findings{list-style:none;padding:0;margin:.4rem 0}
ul.findings li{padding:.35rem 0;border-top:1px solid #eef1f4}
.fix{background:#f6f8fa;border-radius:4px;padding:.2rem .4rem;margin-top:.2rem}
.error{color:#9a6700;margin:.3rem 0}.error b{color:#1f2328}
dl.evidence{display:grid;grid-template-columns:max-content 1fr;gap:.1rem .8rem;margin:.3rem 0}
dl.evidence dt{color:#59636e;font-size:.85em}dl.evidence dd{margin:0}
table{border-collapse:collapse;width:100%;font-size:.9em}
td,th{border-bottom:1px solid #d1d9e0;padding:.3rem .4rem;text-align:left;vertical-align:top}
.warnbox{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.5rem .8rem}
@media (max-width:40rem){body{padding:.6rem}
dl.evidence{grid-template-columns:1fr}dl.evidence dd{margin-bottom:.3rem}
table.history thead{display:none}table.history tr{display:block;border-bottom:1px solid #d1d9e0;
padding:.3rem 0}table.history td{display:block;border:0;padding:.1rem 0}}
"""

e = html.escape


def _when(ts: float, now: float) -> str:
    """Relative time with the absolute UTC time as a tooltip."""
    delta = ts - now
    secs = abs(int(delta))
    if secs < 120:
        text = f"{secs}s"
    elif secs < 7200:
        text = f"{secs // 60}m"
    elif secs < 172800:
        text = f"{secs // 3600}h"
    else:
        text = f"{secs // 86400}d"
    rel = f"in {text}" if delta > 0 else f"{text} ago"
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    return f'<time datetime="{iso}" title="{iso}">{rel}</time>'


def _status(rec: RunRecord | None) -> str:
    return PENDING if rec is None else target_status(rec)


def _badge(status: str) -> str:
    return f'<span class="badge {status}">{_LABELS[status]}</span>'


def target_href(target: Target[Any]) -> str:
    return "target?" + urlencode({"probe": target.probe, "name": target.name})


def _findings(rec: RunRecord) -> str:
    findings = sorted(
        (ReportFinding.of(f) for f in rec.result.findings),
        key=lambda f: ({CRITICAL: 0, WARNING: 1, INFO: 2}.get(f.severity, 9), f.code, f.subject),
    )
    if not findings:
        return "" if rec.result.error else '<p class="meta">No findings.</p>'
    items = []
    for f in findings:
        subject = f' <span class="meta">({e(f.subject)})</span>' if f.subject else ""
        evidence = (
            f'<div>Evidence: <span class="ev">{e(f.evidence)}</span></div>' if f.evidence else ""
        )
        items.append(
            f'<li><span class="sev {f.severity}">{f.severity}</span> '
            f"<code>{e(f.code)}</code>{subject}<div>{e(f.summary)}</div>{evidence}"
            f'<div class="fix"><b>Fix:</b> {e(f.fix)}</div></li>'
        )
    return f'<ul class="findings">{"".join(items)}</ul>'


def _evidence(details: dict[str, str], *, open_: bool) -> str:
    if not details:
        return ""
    rows = "".join(f'<dt>{e(k)}</dt><dd class="ev">{e(v)}</dd>' for k, v in sorted(details.items()))
    attr = " open" if open_ else ""
    return (
        f"<details{attr}><summary>What the probe saw ({len(details)})</summary>"
        f'<dl class="evidence">{rows}</dl></details>'
    )


TABLE_ROWS = 50
"""Rows of a result's table shown on the status page (the target page shows them all)."""


def _tables(rec: RunRecord, *, all_rows: bool) -> str:
    out: list[str] = []
    for table in rec.result.tables:
        rows = table.rows if all_rows else table.rows[:TABLE_ROWS]
        head = "".join(f"<th>{e(c)}</th>" for c in table.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows
        )
        more = len(table.rows) - len(rows)
        note = table.note + (f" ({more} more rows on the target's page)" if more else "")
        out.append(
            f"<h3>{e(table.title)}</h3><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>" + (f'<p class="meta">{e(note)}</p>' if note else "")
        )
    return "".join(out)


def _error(rec: RunRecord) -> str:
    if rec.result.error is None:
        return ""
    return (
        f'<p class="error"><b>Could not tell:</b> {e(rec.result.error)}'
        '<br><span class="meta">Not a verdict on the target: the probe did not finish'
        " (network path, nameservers, timeout).</span></p>"
    )


def _card(target: Target[Any], rec: RunRecord | None, next_run: float | None, now: float,
          *, link: bool, open_evidence: bool) -> str:  # fmt: skip
    status = _status(rec)
    name = e(target.name)
    if link:
        name = f'<a href="{e(target_href(target))}">{name}</a>'
    meta: list[str] = []
    if rec is not None:
        meta.append(f"last run {_when(rec.finished, now)} · took {rec.duration:.2f}s")
    else:
        meta.append("not run yet")
    meta.append(f"next run {_when(next_run, now)}" if next_run else "next run -")
    body = ""
    if rec is not None:
        body = (
            _error(rec)
            + _findings(rec)
            + _tables(rec, all_rows=open_evidence)
            + _evidence(rec.result.details, open_=open_evidence)
        )
    return (
        f'<section class="card {status}"><div class="head">{_badge(status)}'
        f'<span class="meta">{e(target.probe)}</span><span class="name">{name}</span></div>'
        f'<div class="meta">{" · ".join(meta)}</div>{body}</section>'
    )


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title><style>{_CSS}</style></head>
<body>{body}</body></html>
"""


PAGE_SIZE = 100
"""Targets shown per page of ``/``. With every target on one page, 10,000 domains (30,000
targets with blacklists) made a 21 MB page that held the event loop 0.6 s per view."""

REORDER_AFTER = 1.0
"""Seconds an order of the targets is reused while results keep arriving (see :class:`Index`)."""


@dataclass(frozen=True)
class Ordering:
    """The targets worst first, with the count of each state, as of ``generation``."""

    generation: int
    made: float
    keys: tuple[tuple[str, str], ...]
    statuses: tuple[str, ...]
    counts: dict[str, int]


def order_targets(state: State) -> Ordering:
    entries = []
    for key, target in state.targets.items():
        status = _status(state.latest.get(key))
        entries.append((_ORDER[status], target.probe, target.name, key, status))
    entries.sort()
    counts = dict.fromkeys(_ORDER, 0)
    for *_, status in entries:
        counts[status] += 1
    return Ordering(
        state.generation,
        time.monotonic(),
        tuple(e[3] for e in entries),
        tuple(e[4] for e in entries),
        counts,
    )


class Index:
    """Keeps the worst-first order of the targets off the hot path of ``/``.

    Sorting 30,000 targets costs tens of milliseconds; a daemon with that many records a result
    every few milliseconds, so re-sorting on every change would re-sort on every view. The order
    is rebuilt only when :attr:`State.generation` moved and the last one is older than
    :data:`REORDER_AFTER`; each view then renders only its page of cards, from the latest
    results (so a card is never older than the view, only its place in the order may be).
    """

    def __init__(self) -> None:
        self._ordering: Ordering | None = None

    def ordering(self, state: State) -> Ordering:
        o = self._ordering
        if o is None or (
            o.generation != state.generation and time.monotonic() - o.made >= REORDER_AFTER
        ):
            o = self._ordering = order_targets(state)
        return o


def _summary(counts: dict[str, int], shown: str | None) -> str:
    parts = []
    for s in _ORDER:
        if not counts[s]:
            continue
        label = f"{_badge(s)} {counts[s]:,}"
        if s != shown:
            label = f'<a href="?{urlencode({"status": s})}">{label}</a>'
        parts.append(f"<span>{label}</span>")
    if shown is not None:
        parts.append('<span><a href="./">all</a></span>')
    return f'<p class="summary">{"".join(parts)}</p>' if parts else ""


def _pager(page: int, pages: int, first: int, last: int, total: int, status: str | None) -> str:
    if pages <= 1:
        return ""

    def link(p: int, text: str) -> str:
        query = {"status": status, "page": str(p)} if status else {"page": str(p)}
        return f'<a href="?{e(urlencode(query))}">{text}</a>'

    nav = [f"targets {first:,}-{last:,} of {total:,} · page {page} of {pages}"]
    if page > 1:
        nav += [link(1, "&laquo; first"), link(page - 1, "&lsaquo; previous")]
    if page < pages:
        nav += [link(page + 1, "next &rsaquo;"), link(pages, "last &raquo;")]
    return f'<p class="meta pager">{" · ".join(nav)}</p>'


def status_page(
    state: State,
    reload_ok: bool,
    config_path: Path,
    *,
    page: int = 1,
    status: str | None = None,
    index: Index | None = None,
) -> str:
    """``/``: the targets of the running config, worst first, :data:`PAGE_SIZE` per page, with
    the count of each state; ``status`` (critical, warning, pending, ok) shows only those."""
    now = time.time()
    ordering = (index or Index()).ordering(state)
    keys = ordering.keys
    if status in _ORDER:
        keys = tuple(k for k, s in zip(keys, ordering.statuses, strict=True) if s == status)
    else:
        status = None
    pages = max(1, -(-len(keys) // PAGE_SIZE))
    page = min(max(1, page), pages)
    start = (page - 1) * PAGE_SIZE
    cards = []
    for key in keys[start : start + PAGE_SIZE]:
        target = state.targets.get(key)
        if target is None:  # left the config since the order was made
            continue
        rec = state.latest.get(key)
        cards.append(_card(target, rec, state.next_run.get(key), now, link=True,
                           open_evidence=False))  # fmt: skip
    reload = (
        ""
        if reload_ok
        else '<p class="warnbox">The last config reload failed; the previous config is still'
        " running. See the log for the problems.</p>"
    )
    pager = _pager(page, pages, start + 1, start + len(cards), len(keys), status)
    if cards:
        listing = pager + "".join(cards) + pager
    elif status is not None:
        listing = f"<p>No {e(_LABELS[status])} targets.</p>"
    else:
        listing = "<p>No targets configured.</p>"
    body = (
        f"<h1>Email deliverability</h1>"
        f'<p class="meta">deliverability-exporter {e(__version__)} · config'
        f' <code>{e(str(config_path))}</code> · <a href="metrics">metrics</a>'
        f' · <a href="">refresh</a></p>{reload}'
        f"{_summary(ordering.counts, status)}{listing}"
    )
    return _page("Email deliverability exporter", body)


def target_page(state: State, probe: str, name: str) -> str | None:
    """``/target?probe=P&name=N``: the latest result in full, then the recent runs.

    None when no such target is in the config.
    """
    target = state.targets.get((probe, name))
    if target is None:
        return None
    now = time.time()
    rec = state.latest.get(target.key)
    card = _card(target, rec, state.next_run.get(target.key), now, link=False, open_evidence=True)
    rows = []
    for run in reversed(state.history.get(target.key, ())):
        status = target_status(run)
        codes = ", ".join(dict.fromkeys(f.code for f in run.result.findings)) or "-"
        rows.append(
            f"<tr><td>{_when(run.finished, now)}</td><td>{_badge(status)}</td>"
            f"<td>{'yes' if run.success else 'no'}</td><td>{run.duration:.2f}s</td>"
            f"<td><code>{e(codes)}</code></td><td>{e(run.result.error or '')}</td></tr>"
        )
    history = (
        '<table class="history"><thead><tr><th>finished</th><th>state</th><th>completed</th>'
        "<th>duration</th><th>findings</th><th>error</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        if rows
        else "<p>No runs yet.</p>"
    )
    body = (
        f'<p class="meta"><a href="./">&larr; all targets</a></p>'
        f"<h1>{e(probe)} · {e(name)}</h1>"
        f'<p class="meta">every {target.interval:g}s · timeout {target.timeout:g}s</p>'
        f"{card}<h2>Recent runs</h2>"
        f'<p class="meta">Newest first; the last {HISTORY} are kept.</p>{history}'
    )
    return _page(f"{probe} {name} — email deliverability", body)
