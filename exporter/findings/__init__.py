"""The findings catalogue: every finding code the exporter can report, written once.

Each entry has a stable ``code`` (a Prometheus label value users alert on — never rename one), the
probe that reports it, a default severity, a one-line explanation and the fix. The same text is
shown everywhere: the ``deliverability_finding`` metric, ``check`` output, the status page, and
``docs/FINDINGS.md`` (generated: ``python -m exporter.findings > docs/FINDINGS.md``).

The entries are grouped by area: :mod:`exporter.findings.dns` (``dns``, ``dnsbl``),
:mod:`~exporter.findings.transport` (``tls`` with DANE, ``mta_sts``),
:mod:`~exporter.findings.mail` (``roundtrip``, ``reports``), :mod:`~exporter.findings.services`
(``ses``, ``queue``); a new probe kind adds its entries to the module of its area (or a new one,
listed in :data:`CATALOGUE`).

Severity rules (SPEC.md): ``critical`` only for a confirmed bad state; a probe that could not tell
reports ``probe_success 0`` and an error, never a critical finding.
"""

from __future__ import annotations

from exporter.findings import dns, mail, services, transport
from exporter.findings.spec import CRITICAL, INFO, SEVERITIES, WARNING, FindingSpec


def _catalogue(*specs: FindingSpec) -> dict[str, FindingSpec]:
    out: dict[str, FindingSpec] = {}
    for spec in specs:
        if spec.code in out:
            raise ValueError(f"duplicate finding code {spec.code}")
        if spec.severity not in SEVERITIES:
            raise ValueError(f"bad severity for {spec.code}")
        out[spec.code] = spec
    return out


CATALOGUE: dict[str, FindingSpec] = _catalogue(
    *dns.SPECS, *transport.SPECS, *services.SPECS, *mail.SPECS
)


def spec_for(code: str) -> FindingSpec:
    return CATALOGUE[code]


def render_markdown() -> str:
    """The catalogue as Markdown (docs/FINDINGS.md)."""
    lines = [
        "# Findings catalogue",
        "",
        "Generated from `exporter/findings/` (`python -m exporter.findings > docs/FINDINGS.md`).",
        "Each code is a stable value of the `code` label of `deliverability_finding`.",
        "",
    ]
    for probe in dict.fromkeys(s.probe for s in CATALOGUE.values()):
        lines += [f"## {probe}", "", "| code | severity | meaning | fix |", "|---|---|---|---|"]
        for s in CATALOGUE.values():
            if s.probe == probe:
                lines.append(f"| `{s.code}` | {s.severity} | {s.summary} | {s.fix} |")
        lines.append("")
    return "\n".join(lines)


__all__ = [
    "CATALOGUE",
    "CRITICAL",
    "INFO",
    "SEVERITIES",
    "WARNING",
    "FindingSpec",
    "render_markdown",
    "spec_for",
]
