"""Scrape latency while clients send wrong basic-auth passwords (issue 22, item 1).

    .venv/bin/python -m bench.auth_stall                    # this checkout
    .venv/bin/python -m bench.auth_stall --src /tmp/base    # another source tree (before/after)

Starts knot with ``--domains`` bench domains (:mod:`bench.zones`) and the real exporter
(``python -m exporter`` from ``--src``) with a web config whose one user has a bcrypt hash of
cost ``--cost`` (12 by default, ``htpasswd -nBC 12``), every domain probed every 5 s with a 3 s
timeout. Then, for ``--seconds`` each:

1. **quiet**: one scraper with the right password fetches ``/metrics`` every 0.25 s;
2. **attack**: the same scraper while ``--clients`` threads send requests with the right user
   name and a different wrong password each time, as fast as they are answered.

Reports per phase the scrape latency (median, p90, max), the scraper's status codes, the
attackers' status codes and tries per second, and how many targets were seen with
``probe_success 0`` (a probe starved by a blocked event loop times out) and the longest
``probe_duration_seconds`` seen (a healthy run takes milliseconds). One JSON object on
stdout. Wrong passwords differ on every try so no cache can help the attacker or the exporter.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import re
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from bench.knot import Knot
from bench.run import daemon
from bench.zones import SELECTORS, domains, write_zones

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "prometheus", "correct horse battery staple"
_DURATION = re.compile(rb"^deliverability_probe_duration_seconds\{[^}]*\} (\S+)", re.M)
_SUCCESS = re.compile(rb'^deliverability_probe_success\{probe="([^"]*)",target="([^"]*)"\} (\S+)',
                      re.M)  # fmt: skip


def auth_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def get(port: int, header: str, timeout: float = 30.0) -> tuple[int, float, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    req.add_header("Authorization", header)
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = bytes(resp.read())
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        body, status = b"", exc.code
    except OSError:
        body, status = b"", 0
    return status, time.perf_counter() - t0, body


def wait_all_ran(port: int, want: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, body = get(port, auth_header(USER, PASSWORD))
        if status == 200 and len(_SUCCESS.findall(body)) >= want:
            return
        time.sleep(0.5)
    raise RuntimeError("not every target ran")


def phase(port: int, seconds: float, clients: int) -> dict[str, Any]:
    stop = threading.Event()
    attacker_codes: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()

    def attack(n: int) -> None:
        i = 0
        while not stop.is_set():
            status, _, _ = get(port, auth_header(USER, f"wrong-{n}-{i}"))
            i += 1
            with lock:
                attacker_codes[status] += 1

    threads = [threading.Thread(target=attack, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    latencies: list[float] = []
    codes: collections.Counter[int] = collections.Counter()
    failed: set[tuple[bytes, bytes]] = set()
    durations: list[float] = [0.0]
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        status, elapsed, body = get(port, auth_header(USER, PASSWORD))
        latencies.append(elapsed)
        codes[status] += 1
        failed |= {(p, t) for p, t, v in _SUCCESS.findall(body) if float(v) != 1.0}
        durations.extend(float(v) for v in _DURATION.findall(body))
        time.sleep(max(0.0, 0.25 - elapsed))
    stop.set()
    for t in threads:
        t.join(40)
    latencies.sort()
    return {
        "scrapes": len(latencies),
        "scrape_median_s": round(statistics.median(latencies), 4),
        "scrape_p90_s": round(latencies[int(len(latencies) * 0.9)], 4),
        "scrape_max_s": round(latencies[-1], 4),
        "scrape_status": dict(codes),
        "attacker_status": dict(attacker_codes),
        "attacker_tries_per_s": round(sum(attacker_codes.values()) / seconds, 1),
        "targets_seen_failing": len(failed),
        "probe_duration_max_s": round(max(durations), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--src", type=Path, default=ROOT, help="source tree to run the exporter from"
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cost", type=int, default=12)
    parser.add_argument("--domains", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="auth-stall-") as tmp:
        work = Path(tmp)
        zones = write_zones(work / "zones", args.domains)
        with Knot(work / "knot", zones).start() as knot:
            config = work / "config.yaml"
            glob: dict[str, object] = {"nameservers": [f"127.0.0.1:{knot.port}"], "interval": "5s"}
            glob["timeout"] = "3s"
            # Trees from before the minimum intervals (issue 22) have no such key, nor need it.
            if "allow_short_intervals" in (args.src / "exporter" / "config.py").read_text():
                glob["allow_short_intervals"] = True
            config.write_text(yaml.safe_dump({
                "global": glob,
                "domains": [{"domain": d.name, "dkim_selectors": list(SELECTORS)}
                            for d in domains(args.domains)],
            }))  # fmt: skip
            hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(args.cost)).decode()
            web = work / "web.yaml"
            web.write_text(yaml.safe_dump({"basic_auth_users": {USER: hashed}}))
            t0 = time.perf_counter()
            bcrypt.checkpw(b"wrong", hashed.encode())
            one_check = time.perf_counter() - t0
            with daemon(config, "--web.config.file", str(web), src=args.src.resolve()) as (_, port):
                wait_all_ran(port, args.domains)
                quiet = phase(port, args.seconds, 0)
                attack = phase(port, args.seconds, args.clients)
    report = {
        "src": str(args.src),
        "cpus": os.cpu_count(),
        "bcrypt_cost": args.cost,
        "one_check_s": round(one_check, 3),
        "clients": args.clients,
        "domains": args.domains,
        "quiet": quiet,
        "attack": attack,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
