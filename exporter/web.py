"""The ``/`` status page: every target's last result, findings with their fixes, last error,
duration and next run. Plain server-rendered HTML, no external assets, escaped throughout.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

from exporter import __version__
from exporter.findings import CATALOGUE
from exporter.state import State

_CSS = """
body{font-family:system-ui,sans-serif;margin:1rem;max-width:72rem;color:#222}
h1{font-size:1.3rem}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
.ok{color:#1a7f37;font-weight:600}.fail{color:#b42318;font-weight:600}
.pending{color:#777}.critical{color:#b42318}.warning{color:#9a6700}.info{color:#0969da}
.fix{color:#555;font-size:.9em}code{font-size:.9em;word-break:break-all}
@media (max-width:40rem){td,th{display:block;border:0}
tr{border-bottom:1px solid #ddd;display:block}}
"""


def _ago(ts: float, now: float) -> str:
    delta = ts - now
    secs = abs(int(delta))
    text = f"{secs}s" if secs < 120 else f"{secs // 60}m" if secs < 7200 else f"{secs // 3600}h"
    return f"in {text}" if delta > 0 else f"{text} ago"


def status_page(state: State, reload_ok: bool, config_path: Path) -> str:
    now = time.time()
    e = html.escape
    rows: list[str] = []
    for key, target in state.targets.items():
        rec = state.latest.get(key)
        nxt = state.next_run.get(key)
        next_text = _ago(nxt, now) if nxt else "-"
        if rec is None:
            rows.append(
                f"<tr><td>{e(target.probe)}</td><td>{e(target.name)}</td>"
                f'<td class="pending">pending</td><td></td><td>-</td><td>{next_text}</td></tr>'
            )
            continue
        status = '<span class="ok">ok</span>' if rec.success else '<span class="fail">failed</span>'
        items: list[str] = []
        if rec.result.error:
            items.append(f'<li class="fail">error: {e(rec.result.error)}</li>')
        for f in rec.result.findings:
            spec = CATALOGUE[f.code]
            sev = f.severity or spec.severity
            subject = f" ({e(f.subject)})" if f.subject else ""
            evidence = f"<br><code>{e(f.evidence)}</code>" if f.evidence else ""
            items.append(
                f'<li><span class="{sev}">{sev}</span> <b>{e(f.code)}</b>{subject}: '
                f'{e(spec.summary)}{evidence}<br><span class="fix">Fix: {e(spec.fix)}</span></li>'
            )
        found = f"<ul>{''.join(items)}</ul>" if items else "no findings"
        rows.append(
            f"<tr><td>{e(target.probe)}</td><td>{e(target.name)}</td><td>{status}</td>"
            f"<td>{found}</td><td>{_ago(rec.finished, now)} ({rec.duration:.2f}s)</td>"
            f"<td>{next_text}</td></tr>"
        )
    reload = (
        ""
        if reload_ok
        else '<p class="fail">The last config reload failed; the previous config is running.</p>'
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Email deliverability exporter</title><style>{_CSS}</style></head>
<body><h1>Email deliverability exporter {e(__version__)}</h1>
<p>Config <code>{e(str(config_path))}</code> · <a href="metrics">metrics</a></p>{reload}
<table><thead><tr><th>probe</th><th>target</th><th>state</th><th>findings</th>
<th>last run</th><th>next run</th></tr></thead><tbody>
{"".join(rows) or '<tr><td colspan="6">No targets configured.</td></tr>'}
</tbody></table></body></html>
"""
