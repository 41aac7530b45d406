"""TLS probe benchmark: this exporter's ``tls`` probe against Debian's blackbox exporter.

Both probe the same real STARTTLS server (postfix on 127.0.0.1 with a trustme certificate for
``mail.example.test``): blackbox with a ``tcp`` module whose ``query_response`` speaks EHLO and
STARTTLS (``starttls: true``), this exporter through :func:`exporter.runner.run_probe` exactly as
the daemon runs it, on the daemon's event loop (:func:`exporter.runner.run_event_loop`, uvloop;
the bare client for reference too). Both verify the certificate against the same CA file and
the same name.

Reported:

* per-probe latency, sequential, side by side: ours is ``run_probe``'s duration; blackbox's is its
  own ``probe_duration_seconds`` (it excludes the HTTP round trip to blackbox) and, for reference,
  the wall time of the ``/probe`` request;
* that both read the same certificate expiry (``probe_ssl_earliest_cert_expiry`` against our
  ``tls_chain_not_after_timestamp_seconds``);
* one cycle of ``--targets`` targets probed concurrently (the scheduler starts every target's
  first run at once), wall time, ours and blackbox's (``--targets`` concurrent ``/probe`` requests).

Goal (issue 5): ours within 1.5x of blackbox's latency; 200 targets in a cycle in under 5 s.

Needs the Debian packages ``postfix`` and ``prometheus-blackbox-exporter``; run as root (postfix)
with ``.venv/bin/python bench/tls_bench.py [--probes 200] [--targets 200]``. Everything runs on
127.0.0.1 and is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "probes"))
sys.path.insert(0, str(ROOT / "tests"))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from test_tls_postfix import HOST, run_postfix  # noqa: E402

from exporter.config import parse_config  # noqa: E402
from exporter.net.dnsclient import make_resolver  # noqa: E402
from exporter.net.smtp import fetch_context  # noqa: E402
from exporter.probes import PROBES  # noqa: E402
from exporter.results import RunRecord, Target  # noqa: E402
from exporter.runner import Runtime, run_event_loop, run_probe  # noqa: E402

BLACKBOX = "prometheus-blackbox-exporter"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def run_blackbox(ca_file: str) -> Iterator[int]:
    d = Path(tempfile.mkdtemp(prefix="tls-bench-blackbox-"))
    (d / "blackbox.yml").write_text(f"""\
modules:
  smtp_starttls:
    prober: tcp
    timeout: 10s
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^220 "
        - send: "EHLO prober\\r"
        - expect: "^250-STARTTLS"
        - expect: "^250 "
        - send: "STARTTLS\\r"
        - expect: "^220"
        - starttls: true
        - send: "QUIT\\r"
      tls_config:
        ca_file: {ca_file}
        server_name: {HOST}
""")
    port = free_port()
    proc = subprocess.Popen(
        [
            BLACKBOX,
            f"--config.file={d / 'blackbox.yml'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(d, ignore_errors=True)


def blackbox_probe(port: int, target: str) -> tuple[float, dict[str, float]]:
    url = f"http://127.0.0.1:{port}/probe?module=smtp_starttls&target={target}"
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=15) as resp:
        text = resp.read().decode()
    wall = time.perf_counter() - t0
    values = {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels
    }
    return wall, values


def our_targets(n: int, port: int, ca_file: str) -> tuple[list[Target], Runtime]:
    entry = {"target": f"127.0.0.1:{port}", "server_name": HOST, "ca_file": ca_file}
    config = parse_config({"global": {"timeout": "10s"}, "tls": [entry]})
    (template,) = PROBES["tls"].targets(config)
    targets = [
        Target(template.probe, f"{template.name}#{i}", template.settings, 300, 10) for i in range(n)
    ]
    # An IP literal target makes no DNS lookup; the resolver is only there to satisfy the runner.
    deps = Runtime(make_resolver(["127.0.0.1:9"]), config)
    return targets, deps


def value_of(record: RunRecord, metric: str) -> float:
    (found,) = [s.value for s in record.result.samples if s.metric == metric]
    return found


def describe(name: str, xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[int(0.9 * (len(xs) - 1))]
    return (
        f"{name:<34} median {statistics.median(xs) * 1000:7.2f} ms   p90 {p90 * 1000:7.2f} ms"
        f"   mean {statistics.fmean(xs) * 1000:7.2f} ms"
    )


async def ours_sequential(targets: list[Target], deps: Runtime) -> list[RunRecord]:
    records = []
    for t in targets:
        records.append(await run_probe(PROBES["tls"], t, deps))
    return records


async def bare_client(port: int, n: int) -> list[float]:
    """Reference: the least a Python asyncio client does (greeting, EHLO, STARTTLS, handshake,
    QUIT; no verification, no parsing, no metrics), to separate the platform's cost from ours."""
    ctx = fetch_context()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        writer.write(b"EHLO prober\r\n")
        while (await reader.readline())[3:4] == b"-":
            pass
        writer.write(b"STARTTLS\r\n")
        await reader.readline()
        await writer.start_tls(ctx, server_hostname=HOST)
        writer.write(b"QUIT\r\n")
        writer.close()
        out.append(time.perf_counter() - t0)
    return out


async def ours_cycle(targets: list[Target], deps: Runtime) -> tuple[float, list[RunRecord]]:
    t0 = time.perf_counter()
    records = await asyncio.gather(*(run_probe(PROBES["tls"], t, deps) for t in targets))
    return time.perf_counter() - t0, list(records)


def blackbox_cycle(port: int, target: str, n: int) -> float:
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(lambda _: blackbox_probe(port, target)[1], range(n)))
    elapsed = time.perf_counter() - t0
    failed = sum(1 for r in results if r.get("probe_success") != 1)
    if failed:
        print(f"  blackbox: {failed} of {n} probes failed in the cycle")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=200, help="sequential probes each")
    parser.add_argument("--targets", type=int, default=200, help="targets in one cycle")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON too")
    args = parser.parse_args()

    not_after = (dt.datetime.now(dt.UTC) + dt.timedelta(days=60)).replace(microsecond=0)
    limit = max(100, args.targets + 20)
    with run_postfix(not_after, process_limit=limit) as pf, run_blackbox(pf.ca_file) as bb_port:
        target = f"127.0.0.1:{pf.starttls_port}"
        targets, deps = our_targets(max(args.probes, args.targets), pf.starttls_port, pf.ca_file)

        # Warm up both (postfix spawns its smtpd processes, our trust store is loaded once).
        for _ in range(5):
            blackbox_probe(bb_port, target)
        run_event_loop(ours_sequential(targets[:5], deps))

        # Interleave the two in blocks so that drift (other load on the machine) hits both.
        ours: list[RunRecord] = []
        bb_durations: list[float] = []
        bb_walls: list[float] = []
        bb_values: dict[str, float] = {}
        bare: list[float] = []
        block = 20
        for start in range(0, args.probes, block):
            chunk = targets[start : min(start + block, args.probes)]
            ours += run_event_loop(ours_sequential(chunk, deps))
            bare += run_event_loop(bare_client(pf.starttls_port, len(chunk)))
            for _ in chunk:
                wall, bb_values = blackbox_probe(bb_port, target)
                bb_walls.append(wall)
                bb_durations.append(bb_values["probe_duration_seconds"])

        bad = [r for r in ours if r.result.error or value_of(r, "tls_cert_valid") != 1]
        our_expiry = value_of(ours[-1], "tls_chain_not_after_timestamp_seconds")
        bb_expiry = bb_values.get("probe_ssl_earliest_cert_expiry")
        our_durations = [r.duration for r in ours]

        cycle_ours, cycle_records = run_event_loop(ours_cycle(targets[: args.targets], deps))
        cycle_failed = [r for r in cycle_records if r.result.error]
        cycle_bb = blackbox_cycle(bb_port, target, args.targets)

    ratio = statistics.median(our_durations) / statistics.median(bb_durations)
    print(
        f"STARTTLS server: postfix on {target}, certificate for {HOST}, {args.probes} probes each"
    )
    print(describe("ours (run_probe duration)", our_durations))
    print(describe("blackbox (probe_duration_seconds)", bb_durations))
    print(describe("blackbox (HTTP /probe wall time)", bb_walls))
    print(describe("bare asyncio client (reference)", bare))
    print(f"median ratio ours/blackbox: {ratio:.2f}x (goal <= 1.5x)")
    print(
        f"our failed or invalid probes: {len(bad)};"
        f" blackbox probe_success: {bb_values.get('probe_success')}"
    )
    print(
        f"expiry: ours {our_expiry:.0f}, blackbox {bb_expiry},"
        f" certificate {not_after.timestamp():.0f}"
        f" -> {'same' if bb_expiry == our_expiry == not_after.timestamp() else 'DIFFERENT'}"
    )
    print(
        f"cycle of {args.targets} concurrent targets: ours {cycle_ours:.2f} s"
        f" ({len(cycle_failed)} failed), blackbox {cycle_bb:.2f} s (goal < 5 s)"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "ours_median_s": statistics.median(our_durations),
                    "blackbox_median_s": statistics.median(bb_durations),
                    "bare_asyncio_median_s": statistics.median(bare),
                    "ratio": ratio,
                    "expiry_equal": bb_expiry == our_expiry,
                    "cycle_ours_s": cycle_ours,
                    "cycle_blackbox_s": cycle_bb,
                }
            )
        )
    ok = (
        ratio <= 1.5 and cycle_ours < 5 and bb_expiry == our_expiry and not bad and not cycle_failed
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
