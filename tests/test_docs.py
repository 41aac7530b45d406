"""The documentation lists everything the exporter can emit."""

from __future__ import annotations

import re
from pathlib import Path

from exporter.findings import CATALOGUE, render_markdown
from exporter.metrics import ALL_METRICS, PREFIX

ROOT = Path(__file__).resolve().parents[1]


def test_readme_documents_every_metric() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`(deliverability_[a-z0-9_]+)`", readme))
    missing = sorted(PREFIX + name for name in ALL_METRICS if PREFIX + name not in documented)
    assert not missing, f"README.md does not document: {missing}"


def test_readme_documents_no_metric_that_does_not_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`(deliverability_[a-z0-9_]+)`", readme))
    known = {PREFIX + name for name in ALL_METRICS}
    assert documented <= known, f"README.md names unknown metrics: {sorted(documented - known)}"


def test_findings_doc_is_generated_from_the_catalogue() -> None:
    doc = (ROOT / "docs" / "FINDINGS.md").read_text()
    assert doc == render_markdown(), "regenerate: python -m exporter.findings > docs/FINDINGS.md"
    for code in CATALOGUE:
        assert f"`{code}`" in doc


def test_every_finding_has_a_fix_and_a_summary() -> None:
    for spec in CATALOGUE.values():
        assert spec.summary.endswith("."), spec.code
        assert len(spec.fix) > 10, spec.code
        assert re.fullmatch(r"[a-z][a-z0-9_]+", spec.code), spec.code
