"""Rendering run results for people (the ``check`` text report) and machines (``--format json``).

Both renderings read the same :class:`Report`, built once from :class:`~exporter.runner.RunRecord`
values: each target gets a status (``ok``, ``warning`` or ``critical``) from its findings'
severities, and a probe that could not tell (``ProbeResult.error``) counts as a warning, never as
critical (SPEC.md: "a probe that could not tell is a warning"). The exit code follows the Nagios
plugin convention that on-call tooling already understands: 0 ok, 1 warning, 2 critical (3, for
"could not check at all", is returned by :mod:`exporter.check` itself).

The JSON document is described in ``docs/CHECK.md`` and by :data:`JSON_SCHEMA` (JSON Schema
2020-12, committed as ``docs/check-report.schema.json``: ``python -m exporter.report >
docs/check-report.schema.json``); ``schema_version`` changes only when a field is removed or
changes meaning.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Any

from exporter import __version__
from exporter.findings import CATALOGUE, CRITICAL, INFO, WARNING
from exporter.results import Finding, RunRecord, Table, severity_of

SCHEMA_VERSION = 1

OK = "ok"
STATUSES = (OK, WARNING, CRITICAL)
EXIT_CODES = {OK: 0, WARNING: 1, CRITICAL: 2}
SEVERITY_ORDER = {CRITICAL: 0, WARNING: 1, INFO: 2}


@dataclass(frozen=True)
class ReportFinding:
    code: str
    severity: str
    subject: str
    summary: str
    fix: str
    evidence: str

    @classmethod
    def of(cls, finding: Finding) -> ReportFinding:
        spec = CATALOGUE[finding.code]
        return cls(
            code=finding.code,
            severity=severity_of(finding),
            subject=finding.subject,
            summary=spec.summary,
            fix=spec.fix,
            evidence=finding.evidence,
        )


@dataclass(frozen=True)
class ReportTarget:
    probe: str
    target: str
    status: str
    success: bool
    error: str | None
    started: float
    duration: float
    findings: tuple[ReportFinding, ...]
    evidence: tuple[tuple[str, str], ...]
    tables: tuple[Table, ...] = ()

    @classmethod
    def of(cls, rec: RunRecord) -> ReportTarget:
        findings = sorted(
            (ReportFinding.of(f) for f in rec.result.findings),
            key=lambda f: (SEVERITY_ORDER.get(f.severity, 9), f.code, f.subject),
        )
        return cls(
            probe=rec.target.probe,
            target=rec.target.name,
            status=target_status(rec),
            success=rec.success,
            error=rec.result.error,
            started=rec.started,
            duration=rec.duration,
            findings=tuple(findings),
            evidence=tuple(sorted(rec.result.details.items())),
            tables=tuple(rec.result.tables),
        )


def target_status(rec: RunRecord) -> str:
    """``critical`` with any critical finding; ``warning`` with a warning or a probe error."""
    severities = {severity_of(f) for f in rec.result.findings}
    if CRITICAL in severities:
        return CRITICAL
    if WARNING in severities or rec.result.error is not None:
        return WARNING
    return OK


@dataclass(frozen=True)
class Report:
    targets: tuple[ReportTarget, ...]
    started: float
    duration: float
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, records: list[RunRecord], *, started: float, duration: float) -> Report:
        targets = tuple(ReportTarget.of(r) for r in records)
        counts = {CRITICAL: 0, WARNING: 0, INFO: 0}
        for t in targets:
            for f in t.findings:
                counts[f.severity] = counts.get(f.severity, 0) + 1
        counts["errors"] = sum(1 for t in targets if t.error is not None)
        return cls(targets, started, duration, counts)

    @property
    def status(self) -> str:
        worst = OK
        for t in self.targets:
            if STATUSES.index(t.status) > STATUSES.index(worst):
                worst = t.status
        return worst

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


# ----- JSON -----------------------------------------------------------------------------------


def to_json(report: Report) -> dict[str, Any]:
    """The ``--format json`` document (see :data:`JSON_SCHEMA`)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "exporter_version": __version__,
        "started": round(report.started, 3),
        "duration_seconds": round(report.duration, 3),
        "status": report.status,
        "exit_code": report.exit_code,
        "summary": {
            "targets": len(report.targets),
            "critical": report.counts.get(CRITICAL, 0),
            "warning": report.counts.get(WARNING, 0),
            "info": report.counts.get(INFO, 0),
            "errors": report.counts.get("errors", 0),
        },
        "targets": [
            {
                "probe": t.probe,
                "target": t.target,
                "status": t.status,
                "success": t.success,
                "error": t.error,
                "started": round(t.started, 3),
                "duration_seconds": round(t.duration, 3),
                "evidence": dict(t.evidence),
                "findings": [
                    {
                        "code": f.code,
                        "severity": f.severity,
                        "subject": f.subject,
                        "summary": f.summary,
                        "evidence": f.evidence,
                        "fix": f.fix,
                    }
                    for f in t.findings
                ],
                "tables": [
                    {
                        "title": tb.title,
                        "columns": list(tb.columns),
                        "rows": [list(r) for r in tb.rows],
                        "note": tb.note,
                    }
                    for tb in t.tables
                ],
            }
            for t in report.targets
        ],
    }


def render_json(report: Report) -> str:
    return json.dumps(to_json(report), indent=2, ensure_ascii=False) + "\n"


_STR = {"type": "string"}
_NUM = {"type": "number"}
JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "deliverability-exporter check report",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "exporter_version", "started", "duration_seconds", "status",
                 "exit_code", "summary", "targets"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "exporter_version": _STR,
        "started": _NUM,
        "duration_seconds": _NUM,
        "status": {"enum": list(STATUSES)},
        "exit_code": {"enum": [0, 1, 2]},
        "summary": {
            "type": "object",
            "additionalProperties": False,
            "required": ["targets", "critical", "warning", "info", "errors"],
            "properties": {k: {"type": "integer", "minimum": 0}
                           for k in ("targets", "critical", "warning", "info", "errors")},
        },
        "targets": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["probe", "target", "status", "success", "error", "started",
                             "duration_seconds", "evidence", "findings"],
                "properties": {
                    "probe": _STR,
                    "target": _STR,
                    "status": {"enum": list(STATUSES)},
                    "success": {"type": "boolean"},
                    "error": {"type": ["string", "null"]},
                    "started": _NUM,
                    "duration_seconds": _NUM,
                    "evidence": {"type": "object", "additionalProperties": _STR},
                    "tables": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["title", "columns", "rows", "note"],
                            "properties": {
                                "title": _STR,
                                "columns": {"type": "array", "items": _STR},
                                "rows": {"type": "array",
                                         "items": {"type": "array", "items": _STR}},
                                "note": _STR,
                            },
                        },
                    },
                    "findings": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["code", "severity", "subject", "summary", "evidence",
                                         "fix"],
                            "properties": {
                                # A catalogue code (docs/FINDINGS.md); new codes
                                # are added over time, so no fixed list here.
                                "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                                "severity": {"enum": [CRITICAL, WARNING, INFO]},
                                "subject": _STR,
                                "summary": _STR,
                                "evidence": _STR,
                                "fix": _STR,
                            },
                        },
                    },
                },
            },
        },
    },
}  # fmt: skip


# ----- text -----------------------------------------------------------------------------------

_MARKS = {OK: ("✓", "PASS"), WARNING: ("!", "WARN"), CRITICAL: ("✗", "FAIL")}
_ASCII_MARKS = {OK: ("+", "PASS"), WARNING: ("!", "WARN"), CRITICAL: ("x", "FAIL")}
_SEVERITY_MARKS = {CRITICAL: "✗", WARNING: "!", INFO: "i"}
_ASCII_SEVERITY_MARKS = {CRITICAL: "x", WARNING: "!", INFO: "i"}
_COLOURS = {OK: "32", CRITICAL: "31", WARNING: "33", INFO: "36", "dim": "2", "bold": "1"}


class _Style:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, text: str, *kinds: str) -> str:
        if not self.colour or not kinds:
            return text
        codes = ";".join(_COLOURS[k] for k in kinds)
        return f"\033[{codes}m{text}\033[0m"


def render_text(
    report: Report,
    *,
    colour: bool = False,
    width: int = 100,
    unicode: bool = True,
    verbose: bool = False,
) -> str:
    """The human report: one block per target, grouped by probe, worst findings first.

    What the probe saw (its evidence) is shown for targets that need attention, and for passing
    ones too when ``verbose``; long values are cut at :data:`EVIDENCE_LIMIT` characters (the
    JSON output always has them whole).
    """
    style = _Style(colour)
    width = max(60, min(width, 120))
    marks = _MARKS if unicode else _ASCII_MARKS
    sev_marks = _SEVERITY_MARKS if unicode else _ASCII_SEVERITY_MARKS
    out: list[str] = []
    probes = list(dict.fromkeys(t.probe for t in report.targets))
    for probe in probes:
        targets = [t for t in report.targets if t.probe == probe]
        out.append(style(f"== {probe} ({len(targets)} target{'s' * (len(targets) != 1)}) ==",
                         "bold"))  # fmt: skip
        for t in targets:
            mark, word = marks[t.status]
            head = f"{mark} {word}  {printable(t.target)}"
            timing = f"{t.duration:.2f}s"
            pad = max(1, width - len(head) - len(timing))
            out.append(style(head, t.status, "bold") + " " * pad + style(timing, "dim"))
            if t.error is not None:
                out.extend(_para(f"Could not tell: {t.error}", width, "    ", style, WARNING))
            if not t.findings and t.error is None:
                out.append(style("    no findings", "dim"))
            for f in t.findings:
                subject = f" [{f.subject}]" if f.subject else ""
                line = f"  {sev_marks[f.severity]} {f.severity.upper():<8} {f.code}{subject}"
                out.append(style(line, f.severity))
                out.extend(_para(f.summary, width, "      ", style))
                if f.evidence:
                    out.extend(_para(f"Evidence: {f.evidence}", width, "      ", style, "dim"))
                out.extend(_para(f"Fix: {f.fix}", width, "      ", style, "bold"))
            for table in t.tables:
                out.extend(_table(table, width, style, verbose))
            if t.evidence and (verbose or t.status != OK):
                out.append(style("    Seen:", "dim"))
                for key, value in t.evidence:
                    out.extend(_evidence(key, value, width, style, verbose))
        out.append("")
    out.append(summary_line(report, style))
    return "\n".join(out) + "\n"


def summary_line(report: Report, style: _Style | None = None) -> str:
    style = style or _Style(False)
    c = report.counts
    parts = [
        f"{len(report.targets)} target{'s' * (len(report.targets) != 1)} checked"
        f" in {report.duration:.1f}s",
        f"{c.get(CRITICAL, 0)} critical",
        f"{c.get(WARNING, 0)} warning{'s' * (c.get(WARNING, 0) != 1)}",
        f"{c.get(INFO, 0)} info",
    ]
    if c.get("errors"):
        parts.append(f"{c['errors']} could not tell")
    verdict = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL"}[report.status]
    line = style(f"{verdict}: ", report.status, "bold") + ", ".join(parts)
    line += f" (exit {report.exit_code})"
    if c.get("errors"):
        line += (
            "\nA probe that could not tell is not a verdict on the target: check the network"
            "\npath and the nameservers (--nameserver), then run again."
        )
    return line


EVIDENCE_LIMIT = 400
EVIDENCE_LINES = 6
_MORE = "--verbose or --format json shows all"


def _evidence(key: str, value: str, width: int, style: _Style, verbose: bool) -> list[str]:
    """One evidence entry; multi-line values (an SPF include tree) keep their lines."""
    lines = value.splitlines() or [""]
    if len(lines) == 1:
        if not verbose and len(value) > EVIDENCE_LIMIT:
            cut = value[:EVIDENCE_LIMIT].rsplit(" ", 1)[0]
            value = f"{cut} … ({len(value) - len(cut)} more characters: {_MORE})"
        return _para(f"{key}: {value}", width, "      ", style, "dim")
    out = [style(f"      {key}:", "dim")]
    shown = lines if verbose else lines[:EVIDENCE_LINES]
    for line in shown:
        stripped = line.lstrip()
        indent = "        " + line[: len(line) - len(stripped)]
        out.extend(_para(stripped, width, indent, style, "dim"))
    if len(shown) < len(lines):
        out.append(style(f"        … ({len(lines) - len(shown)} more lines: {_MORE})", "dim"))
    return out


TABLE_ROWS = 10


def _table(table: Table, width: int, style: _Style, verbose: bool) -> list[str]:
    """A result's table as aligned columns (the first :data:`TABLE_ROWS` rows unless
    ``verbose``), cells cut to fit the width."""
    rows = list(table.rows) if verbose else list(table.rows[:TABLE_ROWS])
    out = [style(f"    {table.title}:", "bold")]
    if not table.rows:
        out.append(style("      (none)", "dim"))
    else:
        cols = len(table.columns)
        cap = max(6, (width - 6) // max(1, cols) - 2)
        cells = [[c[:cap] for c in table.columns]] + [
            [printable(str(c))[:cap] for c in (*r, *[""] * (cols - len(r)))[:cols]] for r in rows
        ]
        widths = [max(len(row[i]) for row in cells) for i in range(cols)]
        for n, row in enumerate(cells):
            line = "      " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
            out.append(style(line.rstrip(), "dim") if n == 0 else line.rstrip())
        if len(rows) < len(table.rows):
            out.append(style(f"      … ({len(table.rows) - len(rows)} more rows: {_MORE})", "dim"))
    if table.note:
        out.extend(_para(table.note, width, "      ", style, "dim"))
    return out


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters (ESC, BEL, CR, the C1 set) written ``\\xNN``: what a
    probe saw (a redirect's Location, a TXT record) may come from a hostile server, and must
    not drive the terminal of whoever reads the report."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _para(text: str, width: int, indent: str, style: _Style, *kinds: str) -> list[str]:
    lines = textwrap.wrap(
        printable(text),
        width=width,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_long_words=True,
        break_on_hyphens=False,
    )
    return [style(line, *kinds) for line in lines] or [indent]


if __name__ == "__main__":
    sys.stdout.write(json.dumps(JSON_SCHEMA, indent=2) + "\n")
