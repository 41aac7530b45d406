"""Peak memory of one round-trip run against a hostile IMAP server (issue 22, item 2).

    .venv/bin/python -m bench.imap_hostile                   # this checkout
    .venv/bin/python -m bench.imap_hostile --src /tmp/base   # another source tree (before/after)

For each behaviour of ``tests/faults/mailfault.py`` below, the fault server runs in this process
(its own thread) and one run of the ``roundtrip`` probe in a fresh child process
(``python -c`` with ``PYTHONPATH=--src``), which reports its resident set before the run, its
peak (``VmHWM``) after it, and the run's error. Behaviours: one literal of 16 MB, one response
of 40 literals of 16 MB (767 MB before the limits), of 40 literals of 1 MB (each under the
literal limit, together over the response limit), a flood of untagged lines (1.73 GB), a 2 MB
search line. Prints one JSON object; ``tests/faults/test_faults_mail.py`` runs it and checks the
growth stays under the limits' sum.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from faults.mailfault import (  # noqa: E402
    Behaviour,
    ThreadedFaultServer,
    imap_huge_folder,
    imap_literals,
    imap_untagged_flood,
)

BEHAVIOURS: dict[str, Behaviour] = {
    "literal_16mb": imap_literals(1, 16 << 20),
    "response_40_literals_of_16mb": imap_literals(40, 16 << 20),
    "response_40_literals_of_1mb": imap_literals(40, 1 << 20),
    "untagged_flood": imap_untagged_flood,
    "search_line_2mb": imap_huge_folder,
}

CHILD = r"""
import asyncio, json, re, sys
from pathlib import Path
from exporter.config import parse_config
from exporter.probes import PROBES
from exporter.runner import run_probe

def status(field):
    text = Path("/proc/self/status").read_text()
    return int(re.search(field + r":\s+(\d+)", text).group(1))

port, pwfile, timeout = int(sys.argv[1]), sys.argv[2], sys.argv[3]
config = parse_config({
    "global": {"nameservers": ["127.0.0.1:9"]},
    "roundtrip": [{
        "name": "hostile", "from": "probe@example.test", "to": "inbox@example.test",
        "timeout": timeout,
        "smtp": {"host": "127.0.0.1", "port": 9, "security": "none"},
        "imap": {"host": "127.0.0.1", "port": port, "security": "none",
                 "username": "inbox@example.test", "password_file": pwfile},
    }],
})
try:  # after the seams (issue 15)
    from exporter.net.dnsclient import make_resolver
    from exporter.runner import Runtime
    deps = Runtime(make_resolver(["127.0.0.1:9"], attempt_timeout=0.5, lifetime=0.5), config)
except ImportError:
    from exporter.dnsclient import make_resolver
    from exporter.runner import RunnerDeps
    deps = RunnerDeps(make_resolver(["127.0.0.1:9"], attempt_timeout=0.5, lifetime=0.5), config)
(target,) = PROBES["roundtrip"].targets(config)
before = status("VmRSS")
rec = asyncio.run(run_probe(PROBES["roundtrip"], target, deps))
print(json.dumps({"rss_before_kib": before, "peak_kib": status("VmHWM"),
                  "error": rec.result.error}))
"""


def run_one(src: Path, behaviour: Behaviour, timeout: str, pwfile: Path) -> dict[str, Any]:
    server = ThreadedFaultServer(behaviour).start()
    try:
        env = {**os.environ, "PYTHONPATH": str(src)}
        res = subprocess.run(
            [sys.executable, "-c", CHILD, str(server.port), str(pwfile), timeout],
            cwd=src, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    finally:
        server.stop()
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    out["growth_mib"] = round((out["peak_kib"] - out["rss_before_kib"]) / 1024, 1)
    out["peak_mib"] = round(out["peak_kib"] / 1024, 1)
    return out


def measure(src: Path, names: list[str], timeout: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="imap-hostile-") as tmp:
        pwfile = Path(tmp) / "pw"
        pwfile.write_text("imap-secret\n")
        return {name: run_one(src, BEHAVIOURS[name], timeout, pwfile) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=ROOT, help="source tree of the exporter")
    parser.add_argument("--timeout", default="10s", help="the run's timeout")
    parser.add_argument("--only", default=",".join(BEHAVIOURS), help="behaviours, comma-separated")
    args = parser.parse_args()
    report = measure(args.src.resolve(), args.only.split(","), args.timeout)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
