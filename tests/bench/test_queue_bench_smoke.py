"""The queue probe's bench in smoke mode (2,000 messages, 5 RQ queues), so that it never rots.

Runs ``python -m bench.queue_bench --smoke`` as a person would (a real subprocess listing, a lab
redis-server with jobs from the real rq package) and checks the report's fields and counts; no
timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_queue_bench_smoke() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "bench.queue_bench", "--smoke"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    report = json.loads(res.stdout.splitlines()[-1])
    (postfix,) = report["postfix"]
    assert postfix["messages"] == 2000 and postfix["messages_per_s"] > 0
    assert 0 < postfix["distinct_reasons"] <= 1000
    assert postfix["peak_rss_mb_after"] >= postfix["peak_rss_mb_before"] > 0
    (redis,) = report["redis"]
    assert redis["queues"] == 5 and redis["jobs_per_queue"] == 50
    # 1 workers sample + per queue depth, oldest age and failed
    assert redis["series"] == 1 + 5 * 3
    # three pipelines: the sets, the queues (5 commands each), the head jobs and workers
    assert redis["redis_commands_per_run"] > 5 * 5
