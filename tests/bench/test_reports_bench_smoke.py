"""The report-parsing bench on a small report, so that it never rots: every field is there and
the memory children ran. No timing is asserted (timing is the bench's job, on a quiet machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_reports_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "reports.json"
    res = subprocess.run(
        [sys.executable, "-m", "bench.reports_bench", "--size", "100000", "--number", "1",
         "--repeat", "1", "--no-peer", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    report = json.loads(out.read_text())
    assert report["xml_bytes"] >= 99_000 and report["records"] > 100
    assert set(report["reports_per_s"]) == {"parse", "message", "baseline"}
    assert all(v > 0 for v in report["reports_per_s"].values())
    for what in ("parse", "message"):
        assert report["memory_mib"][what]["tracemalloc_peak_mib"] > 0
