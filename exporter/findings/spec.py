"""What a catalogue entry is: a code, the probe that reports it, a severity, the explanation and
the fix (the entries are in the modules beside this one)."""

from __future__ import annotations

from dataclasses import dataclass

CRITICAL = "critical"
WARNING = "warning"
INFO = "info"
SEVERITIES = (CRITICAL, WARNING, INFO)


@dataclass(frozen=True)
class FindingSpec:
    code: str
    probe: str
    severity: str
    summary: str
    fix: str
