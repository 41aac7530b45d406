"""The scale bench in smoke mode (N = 20, no peers), so that it never rots.

Runs ``python -m bench.run --smoke`` exactly as a person would: knot serving the synthetic zones,
the in-process cycle, the real exporter process scraped over HTTP, and two ``--shard`` replicas.
Checks that the report has every field and that the shards cover the targets exactly once; no
timing is asserted (timing is the bench's job, on a quiet machine).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KINDS_FIELDS = {"targets", "succeeded", "wall_s", "cpu_s", "queries", "queries_per_s", "errors"}
RENDER_FIELDS = {"generate_latest_s", "first_s", "one_changed_s", "bytes", "series"}
DAEMON_FIELDS = {
    "first_cycle_s", "targets_failed", "scrape_median_s", "scrape_max_s", "metrics_bytes",
    "series", "peak_rss_mb", "cpu_s_first_cycle", "cpu_s_10_scrapes",
}  # fmt: skip


def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    res = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    report = json.loads(out.read_text())
    assert out.with_suffix(".md").read_text().startswith("Scale bench")
    (run,) = report["runs"]
    assert run["n"] == 20
    kinds = run["cycle"]["kinds"]
    assert {"dns", "dnsbl"} <= kinds.keys()
    for name, kind in kinds.items():
        assert kind.keys() >= KINDS_FIELDS, name
        assert kind["succeeded"] == kind["targets"], (name, kind["errors"])
    # Every domain's dns run asked knot something, and the shared cache kept it below the
    # naive count (17 questions per domain, 8 of them the same provider includes).
    assert 20 * 4 <= kinds["dns"]["queries"] < 20 * 17
    # The first cycle from process start, and the steady cycles after it (every question asked
    # again: the shared answers were forgotten; the verdicts replayed), each with every target
    # succeeding.
    dns = kinds["dns"]
    assert dns["from_start_s"] > dns["wall_s"] > 0
    assert dns["steady"]["succeeded_min"] == dns["targets"]
    assert len(dns["steady"]["wall_s_runs"]) == 3
    assert dns["steady"]["queries"] == dns["queries"]
    assert run["cycle"]["dns_first"]["from_start_s"] == dns["from_start_s"]
    assert run["cycle"]["dns_steady"]["wall_s"] > 0
    # The same with every domain judged again (the dns probe's memory forgotten): the same
    # questions on the wire.
    assert dns["judged"]["succeeded_min"] == dns["targets"]
    assert dns["judged"]["queries"] == dns["queries"]
    assert run["cycle"]["dns_judged"]["wall_s"] > 0
    assert run["cycle"]["render"].keys() >= RENDER_FIELDS
    assert run["cycle"]["peak_rss_mb"] > 0
    daemon = run["daemon"]
    assert daemon.keys() >= DAEMON_FIELDS
    assert daemon["targets_failed"] == 0
    assert daemon["series"] == run["cycle"]["render"]["series"] > 20 * 20
    shards = run["shards"]
    assert shards["targets"] == run["targets"]
    assert shards["shard_1"] > 0 and shards["shard_2"] > 0
    assert shards["overlap"] == 0 and shards["missing"] == 0 and shards["extra"] == 0
    assert shards["exactly_once"] is True
    assert set(report["slopes"]) >= {"dns_cycle_cpu_s", "scrape_s", "daemon_peak_rss_mb"}
