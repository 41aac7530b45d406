"""The scale bench: the cost of a cycle, of a scrape and of memory as the number of domains grows.

    .venv/bin/python -m bench.run                          # N = 100, 1,000, 10,000 with peers
    .venv/bin/python -m bench.run --sizes 100,1000 --no-peers
    .venv/bin/python -m bench.run --smoke                  # N = 20, no peers: what CI runs

For each N: synthetic zones (:mod:`bench.zones`) served by knot on 127.0.0.1 (:mod:`bench.knot`,
which counts every query the server answers), a config with N domains (two DKIM selectors and one
sending IP each) and blacklists on the bench's own DNSBL zones, then

1. **cycle** (:mod:`bench.cycle`, its own process; three times where the peers run, the run with
   the median ``dns`` wall time reported): every target of each probe kind started at
   once through ``run_probe``; wall time, CPU seconds, queries answered by knot, queries/s, and
   the time to render ``/metrics`` from all the records (plain ``generate_latest``, the served
   renderer's first call, and a scrape after one target's result changed). For ``dns``: the
   **first** cycle of a fresh process (also timed from process start: interpreter, imports,
   config, then the cycle) and the **steady** cycle (three more in the same process, every
   question asked again), medians over the three processes;
2. **daemon**: the real exporter (``python -m exporter``) on the same config, until every target
   has run once; ``/metrics`` scrape time (median of 10) and size, peak RSS (``VmHWM``), CPU
   seconds of the process;
3. **peers** (N <= ``--peers-max``): checkdmarc (SPF, DMARC, MX) and pydnsbl (the IP list) on the
   same zones, from ``bench/.venv-peers`` (created here on first use; never a project dependency),
   see :mod:`bench.peers` for how they are kept off the internet;
4. **shards** (smallest N): two daemons with ``--shard 1/2`` and ``--shard 2/2``; their
   ``probe_success`` target sets must be disjoint and together equal every target of the config.

Then the slope of each cost against N (least squares) and its linearity (R²). The exporter's
bytecode is compiled first (:func:`compile_bytecode`), as an installed exporter has it. The
report is printed as Markdown and written as JSON and Markdown to ``bench/results/``. ``--tls``
adds the side by side of the ``tls`` probe with blackbox_exporter (``bench/tls_bench.py``).

Numbers depend on the machine and its load: CPU seconds and query counts are steadier than wall
times on a shared machine.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from bench.knot import Knot, free_port
from bench.zones import DOMAIN_LIST, IP_LIST, SELECTORS, domains, write_zones

ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = ROOT / "bench" / ".venv-peers"
PEER_PACKAGES = ("checkdmarc", "pydnsbl", "parsedmarc")
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable


def write_config(path: Path, n: int, port: int, interval: str = "1h") -> None:
    config = {
        # The zones here are unsigned and knot serves no root: DNSSEC has its own bench
        # (bench/dnssec_bench.py), so these numbers stay comparable with earlier reports.
        "global": {
            "nameservers": [f"127.0.0.1:{port}"],
            "interval": interval,
            "timeout": "60s",
            "dnssec": False,
            "allow_short_intervals": True,
        },
        "domains": [
            {"domain": d.name, "dkim_selectors": list(SELECTORS), "sending_ips": [d.sending_ip]}
            for d in domains(n)
        ],
        "blacklists": {
            "ip_zones": [IP_LIST],
            "domain_zones": [DOMAIN_LIST],
            "interval": interval,
        },
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def expected_targets(config: Path) -> set[tuple[str, str]]:
    from exporter.config import load_config
    from exporter.daemon import all_targets

    return {t.key for t in all_targets(load_config(config))}


# ----- the cycle ------------------------------------------------------------------------------


def run_cycles(config: Path, knot: Knot, repeat: int) -> dict[str, Any]:
    """:func:`run_cycle` ``repeat`` times (fresh processes): the run whose first ``dns`` cycle
    took the median wall time, with every run's in ``dns_wall_s_runs``. A 2 s cycle on shared
    cores varies by +-15 % from run to run; the median is the fair single number. Also, over all
    runs, ``dns_first`` (the median first cycle of a fresh process: the cycle alone, and from
    process start), ``dns_steady`` (the median of every steady cycle, :mod:`bench.cycle`) and
    ``dns_judged`` (the same with every domain judged again)."""
    runs = sorted(
        (run_cycle(config, knot) for _ in range(repeat)),
        key=lambda r: float(r["kinds"].get("dns", {}).get("wall_s", 0.0)),
    )
    chosen = runs[len(runs) // 2]
    chosen["dns_wall_s_runs"] = [r["kinds"].get("dns", {}).get("wall_s") for r in runs]
    dns = [r["kinds"]["dns"] for r in runs if "dns" in r["kinds"]]
    if dns:
        chosen["dns_first"] = {
            key: statistics.median(float(d[key]) for d in dns)
            for key in ("wall_s", "cpu_s", "from_start_s")
        }
        chosen["dns_first"]["from_start_s_runs"] = [d["from_start_s"] for d in dns]
        for key in ("steady", "judged"):
            measured = [d[key] for d in dns if key in d]
            if measured:
                walls = [w for s in measured for w in s["wall_s_runs"]]
                cpus = [c for s in measured for c in s["cpu_s_runs"]]
                chosen[f"dns_{key}"] = {
                    "wall_s": statistics.median(walls),
                    "cpu_s": statistics.median(cpus),
                    "wall_s_runs": walls,
                    "succeeded_min": min(s["succeeded_min"] for s in measured),
                }
    return chosen


def run_cycle(config: Path, knot: Knot) -> dict[str, Any]:
    res = subprocess.run(
        [PYTHON, "-m", "bench.cycle", str(config), "--knot-control", str(knot.socket)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(f"bench.cycle failed: {res.stderr[-2000:]}")
    return dict(json.loads(res.stdout))


# ----- the daemon -----------------------------------------------------------------------------


@contextlib.contextmanager
def daemon(
    config: Path, *extra: str, src: Path = ROOT
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The exporter from the source tree ``src`` (this checkout by default) on a free port."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(src)} if src != ROOT else None
    proc = subprocess.Popen(
        [PYTHON, "-m", "exporter", "--config.file", str(config),
         "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "error",
         "--storage.path", str(config.parent / "data"), *extra],
        cwd=src, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield proc, port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def scrape(port: int) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as resp:
        body = bytes(resp.read())
    return time.perf_counter() - t0, body


_LABELS = rb'\{probe="([^"]*)",target="([^"]*)"\}'
_RAN = re.compile(rb"^deliverability_probe_last_run_timestamp_seconds" + _LABELS, re.M)
_SUCCESS = re.compile(rb"^deliverability_probe_success" + _LABELS + rb" (\S+)", re.M)


def wait_all_ran(proc: subprocess.Popen[bytes], port: int, want: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    body = b""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"exporter exited: {err[-2000:]}")
        with contextlib.suppress(OSError):
            _, body = scrape(port)
            if len(_RAN.findall(body)) >= want:
                return body
        time.sleep(1.0)
    raise RuntimeError(f"not every target ran within {timeout:.0f}s: {len(_RAN.findall(body))}")


def proc_stats(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    return {"peak_rss_mb": round(hwm / 1024, 1), "rss_mb": round(rss / 1024, 1), "cpu_s": cpu}


def run_daemon(config: Path, n_targets: int) -> dict[str, Any]:
    with daemon(config) as (proc, port):
        t0 = time.perf_counter()
        body = wait_all_ran(proc, port, n_targets, timeout=120 + n_targets / 20)
        first_cycle = time.perf_counter() - t0
        after_cycle = proc_stats(proc.pid)
        times = []
        for _ in range(10):
            elapsed, body = scrape(port)
            times.append(elapsed)
        final = proc_stats(proc.pid)
        failed = sum(1 for *_, v in _SUCCESS.findall(body) if float(v) != 1.0)
    return {
        "first_cycle_s": round(first_cycle, 2),
        "targets_failed": failed,
        "scrape_median_s": round(statistics.median(times), 4),
        "scrape_max_s": round(max(times), 4),
        "metrics_bytes": len(body),
        "series": sum(1 for line in body.splitlines() if line and not line.startswith(b"#")),
        "peak_rss_mb": final["peak_rss_mb"],
        "cpu_s_first_cycle": round(after_cycle["cpu_s"], 2),
        "cpu_s_10_scrapes": round(final["cpu_s"] - after_cycle["cpu_s"], 2),
    }


def run_soak(config: Path, n_targets: int, interval: float, cycles: int) -> dict[str, Any]:
    """The daemon over several cycles (short interval): RSS after each, to see what the
    per-target history costs once it fills."""
    rss: list[float] = []
    with daemon(config) as (proc, port):
        wait_all_ran(proc, port, n_targets, timeout=120 + n_targets / 20)
        rss.append(proc_stats(proc.pid)["rss_mb"])
        for _ in range(cycles - 1):
            time.sleep(interval)
            scrape(port)
            rss.append(proc_stats(proc.pid)["rss_mb"])
        stats = proc_stats(proc.pid)
    return {
        "interval_s": interval,
        "cycles": cycles,
        "rss_mb_after_each": rss,
        "peak_rss_mb": stats["peak_rss_mb"],
        "cpu_s": round(stats["cpu_s"], 2),
    }


def shard_check(config: Path) -> dict[str, Any]:
    """Two replicas with --shard 1/2 and 2/2 cover every target exactly once."""
    want = expected_targets(config)
    seen: list[set[tuple[str, str]]] = [set(), set()]
    with daemon(config, "--shard", "1/2") as one, daemon(config, "--shard", "2/2") as two:
        deadline = time.monotonic() + 120 + len(want) / 20
        # Until the two replicas together have run as many targets as the config has.
        while time.monotonic() < deadline and len(seen[0]) + len(seen[1]) < len(want):
            for i, (proc, port) in enumerate((one, two)):
                if proc.poll() is not None:
                    raise RuntimeError(f"shard {i + 1}/2 exited")
                with contextlib.suppress(OSError):
                    _, body = scrape(port)
                    seen[i] = {(p.decode(), t.decode()) for p, t in _RAN.findall(body)}
            time.sleep(0.5)
    overlap = seen[0] & seen[1]
    union = seen[0] | seen[1]
    return {
        "targets": len(want),
        "shard_1": len(seen[0]),
        "shard_2": len(seen[1]),
        "overlap": len(overlap),
        "missing": len(want - union),
        "extra": len(union - want),
        "exactly_once": not overlap and union == want,
    }


# ----- peers ----------------------------------------------------------------------------------


def peer_python() -> Path:
    """The peers' virtualenv (made on first use; a peer missing from an older one is added)."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    probe = (
        "import importlib.util, sys;"
        "sys.exit(any(importlib.util.find_spec(m) is None for m in sys.argv[1:]))"
    )
    if subprocess.run([str(python), "-c", probe, *PEER_PACKAGES], check=False).returncode:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True, timeout=900
        )
    return python


def run_peer(knot: Knot, workdir: Path, tool: str, items: list[str], *extra: str) -> dict[str, Any]:
    listing = workdir / f"{tool}.txt"
    listing.write_text("\n".join(items) + "\n")
    q0 = knot.queries()
    res = subprocess.run(
        [str(peer_python()), str(ROOT / "bench" / "peers.py"), tool, str(knot.port), str(listing),
         *extra],
        capture_output=True, text=True, timeout=7200, check=False,
    )  # fmt: skip
    if res.returncode != 0:
        return {"tool": tool, "error": res.stderr.strip().splitlines()[-1:]}
    out: dict[str, Any] = json.loads(res.stdout)
    out["queries"] = knot.queries() - q0
    return out


# ----- one size and the report ----------------------------------------------------------------


def measure(n: int, *, peers: bool, shards: bool, workdir: Path, soak: int = 0) -> dict[str, Any]:
    zones = write_zones(workdir / "zones", n)
    config = workdir / "config.yaml"
    with Knot(workdir, zones) as knot:
        write_config(config, n, knot.port)
        n_targets = len(expected_targets(config))
        out: dict[str, Any] = {"n": n, "targets": n_targets}
        out["cycle"] = run_cycles(config, knot, repeat=3 if peers else 1)
        out["daemon"] = run_daemon(config, n_targets)
        if peers:
            doms = domains(n)
            out["checkdmarc"] = run_peer(knot, workdir, "checkdmarc", [d.name for d in doms])
            out["pydnsbl"] = run_peer(
                knot, workdir, "pydnsbl", [d.sending_ip for d in doms], IP_LIST
            )
        if shards:
            out["shards"] = shard_check(config)
        if soak > 1:
            interval = max(30, n // 40)
            soak_config = workdir / "soak.yaml"
            write_config(soak_config, n, knot.port, interval=f"{interval}s")
            out["soak"] = run_soak(soak_config, n_targets, interval, soak)
    return out


def fit(xs: list[float], ys: list[float]) -> dict[str, float]:
    """Least-squares slope and intercept of ys against xs, and R²."""
    if len(xs) < 2:
        return {"slope": 0.0, "intercept": ys[0] if ys else 0.0, "r2": 1.0}
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    return {"slope": slope, "intercept": intercept, "r2": 1 - ss_res / ss_tot if ss_tot else 1.0}


SLOPES = {
    "dns_cycle_cpu_s": ("ms CPU per domain", 1000, lambda r: r["cycle"]["kinds"]["dns"]["cpu_s"]),
    "dns_cycle_wall_s": ("ms per domain", 1000, lambda r: r["cycle"]["kinds"]["dns"]["wall_s"]),
    "dns_queries": ("queries per domain", 1, lambda r: r["cycle"]["kinds"]["dns"]["queries"]),
    "scrape_s": ("ms per 1,000 domains", 1e6, lambda r: r["daemon"]["scrape_median_s"]),
    "metrics_bytes": ("bytes per domain", 1, lambda r: r["daemon"]["metrics_bytes"]),
    "daemon_peak_rss_mb": ("KB per domain", 1024, lambda r: r["daemon"]["peak_rss_mb"]),
    "daemon_cpu_s": ("ms CPU per domain", 1000, lambda r: r["daemon"]["cpu_s_first_cycle"]),
}


def slopes(runs: list[dict[str, Any]]) -> dict[str, Any]:
    xs = [float(r["n"]) for r in runs]
    out: dict[str, Any] = {}
    for key, (unit, scale, get) in SLOPES.items():
        f = fit(xs, [float(get(r)) for r in runs])
        out[key] = {
            "slope": round(f["slope"] * scale, 4),
            "unit": unit,
            "intercept": round(f["intercept"], 3),
            "r2": round(f["r2"], 4),
        }
    return out


def markdown(report: dict[str, Any]) -> str:
    runs = report["runs"]
    lines = [
        f"Scale bench, {report['when']}, {report['machine']}",
        "",
        "| N domains | targets | probe | wall s | CPU s | queries | queries/s | ok | load avg |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        for kind, k in r["cycle"]["kinds"].items():
            runs_note = r["cycle"].get("dns_wall_s_runs", []) if kind == "dns" else []
            wall = k["wall_s"]
            if len(runs_note) > 1:
                wall = f"{wall} (of {', '.join(map(str, runs_note))})"
            lines.append(
                f"| {r['n']:,} | {k['targets']:,} | {kind} | {wall} | {k['cpu_s']} |"
                f" {k['queries']:,} | {k['queries_per_s']:,} | {k['succeeded']:,} |"
                f" {r.get('load_average', [''])[0]} |"
            )
    firsts = [r for r in runs if "dns_first" in r["cycle"]]
    if firsts:
        lines += [
            "",
            "| N domains | dns first cycle after start: from process start s | the cycle alone"
            " s (CPU s) | dns steady cycle s (CPU s) | steady runs s | every domain judged"
            " again s (CPU s) |",
            "|---:|---:|---:|---:|---|---:|",
        ]
        for r in firsts:
            f, st = r["cycle"]["dns_first"], r["cycle"].get("dns_steady", {})
            ju = r["cycle"].get("dns_judged", {})
            lines.append(
                f"| {r['n']:,} | {f['from_start_s']:.3f} (of"
                f" {', '.join(map(str, f['from_start_s_runs']))}) |"
                f" {f['wall_s']:.3f} ({f['cpu_s']:.3f}) |"
                f" {st.get('wall_s', 0):.3f} ({st.get('cpu_s', 0):.3f}) |"
                f" {', '.join(map(str, st.get('wall_s_runs', [])))} |"
                f" {ju.get('wall_s', 0):.3f} ({ju.get('cpu_s', 0):.3f}) |"
            )
    lines += [
        "",
        "| N domains | /metrics render: generate_latest s | served, first s | served, one"
        " changed s | daemon scrape median s | size bytes | series | daemon peak RSS MB |"
        " daemon CPU s (first cycle) | first cycle s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        c, d = r["cycle"]["render"], r["daemon"]
        lines.append(
            f"| {r['n']:,} | {c['generate_latest_s']} | {c['first_s']} | {c['one_changed_s']} |"
            f" {d['scrape_median_s']} | {d['metrics_bytes']:,} | {d['series']:,} |"
            f" {d['peak_rss_mb']} | {d['cpu_s_first_cycle']} | {d['first_cycle_s']} |"
        )
    peer_rows = [r for r in runs if "checkdmarc" in r]
    if peer_rows:
        lines += [
            "",
            "| N | checkdmarc: wall s / CPU s / queries (from process start s) | ours dns first"
            " cycle: wall s / CPU s / queries | speed-up | ours first, from process start s |"
            " speed-up (both from start) | ours dns steady: wall s / CPU s | speed-up |"
            " ours dns, every domain judged again: wall s | speed-up |"
            " ours dnsbl: wall s / CPU s | pydnsbl: wall s / CPU s / queries |",
            "|---:|---|---|---:|---:|---:|---|---:|---:|---:|---|---|",
        ]
        for r in peer_rows:
            k, cd, pb = r["cycle"]["kinds"]["dns"], r["checkdmarc"], r["pydnsbl"]
            first = r["cycle"].get("dns_first", k)
            steady = r["cycle"].get("dns_steady", {})
            judged = r["cycle"].get("dns_judged", {})
            dnsbl = r["cycle"]["kinds"].get("dnsbl", {})
            lines.append(
                f"| {r['n']:,} | {cd.get('wall_s')} / {cd.get('cpu_s')} /"
                f" {cd.get('queries', 0):,} ({cd.get('from_start_s')}) |"
                f" {first['wall_s']:.3f} / {first['cpu_s']:.3f} / {k['queries']:,} |"
                f" {_ratio(cd.get('wall_s'), first['wall_s'])} |"
                f" {first.get('from_start_s', 0):.3f} |"
                f" {_ratio(cd.get('from_start_s'), first.get('from_start_s'))} |"
                f" {steady.get('wall_s', 0):.3f} / {steady.get('cpu_s', 0):.3f} |"
                f" {_ratio(cd.get('wall_s'), steady.get('wall_s'))} |"
                f" {judged.get('wall_s', 0):.3f} |"
                f" {_ratio(cd.get('wall_s'), judged.get('wall_s'))} |"
                f" {dnsbl.get('wall_s')} / {dnsbl.get('cpu_s')} |"
                f" {pb.get('wall_s')} / {pb.get('cpu_s')} / {pb.get('queries', 0):,} |"
            )
    lines += ["", "| cost | slope | unit | R² |", "|---|---:|---|---:|"]
    for key, s in report["slopes"].items():
        lines.append(f"| {key} | {s['slope']} | {s['unit']} | {s['r2']} |")
    for r in runs:
        if "shards" in r:
            s = r["shards"]
            lines += [
                "",
                f"Shards at N={r['n']}: {s['targets']} targets, shard 1/2 ran {s['shard_1']},"
                f" 2/2 ran {s['shard_2']}, overlap {s['overlap']}, missing {s['missing']}:"
                f" exactly once = {s['exactly_once']}",
            ]
    for r in runs:
        if "soak" in r:
            s = r["soak"]
            lines += [
                "",
                f"Daemon over {s['cycles']} cycles of {s['interval_s']} s at N={r['n']}:"
                f" RSS after each cycle (MB) {s['rss_mb_after_each']}, peak {s['peak_rss_mb']}",
            ]
    if "tls" in report:
        lines += ["", f"TLS (bench/tls_bench.py): {json.dumps(report['tls'])}"]
    return "\n".join(lines) + "\n"


def _ratio(theirs: object, ours: object) -> str:
    """How many times faster ours is ('n/a' when either is missing)."""
    if not isinstance(theirs, int | float) or not isinstance(ours, int | float) or not ours:
        return "n/a"
    return f"{theirs / ours:.1f}x"


def run_tls_bench() -> dict[str, Any]:
    res = subprocess.run(
        [PYTHON, str(ROOT / "bench" / "tls_bench.py"), "--probes", "50", "--targets", "200",
         "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    for line in reversed(res.stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    return {"error": (res.stderr or res.stdout).strip().splitlines()[-1:]}


def compile_bytecode() -> None:
    """Compile the exporter's bytecode, as ``pip install`` does for an installed package, so that
    a daemon started by the bench (and its first cycle from process start) loads it as an
    installed daemon does. An editable checkout under ``PYTHONDONTWRITEBYTECODE`` (set on some
    CI and sandbox machines) would otherwise compile the exporter's 60 modules at every start:
    0.15-0.2 s of the first cycle from process start at N = 1,000 here. The peers are installed
    with pip, their bytecode compiled. ``__pycache__`` is git-ignored."""
    compileall.compile_dir(ROOT / "exporter", quiet=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="comma-separated N")
    parser.add_argument("--smoke", action="store_true", help="N = 20, no peers (CI)")
    parser.add_argument("--no-peers", action="store_true", help="skip checkdmarc and pydnsbl")
    parser.add_argument("--peers-max", type=int, default=1000, help="largest N for the peers")
    parser.add_argument("--tls", action="store_true", help="also run bench/tls_bench.py")
    parser.add_argument("--out", type=Path, default=None, help="JSON report path")
    parser.add_argument(
        "--soak", type=int, default=0, metavar="CYCLES",
        help="also run the daemon for CYCLES short cycles at the largest N <= 1,000 (RSS)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    sizes = [20] if args.smoke else [int(s) for s in args.sizes.split(",") if s]
    peers = not (args.smoke or args.no_peers)
    for tool in ("knotd", "knotc"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            print(f"{tool} not found: apt-get install -y --no-install-recommends knot")
            return 2
    compile_bytecode()
    out = args.out or RESULTS / f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs,"
        f" Python {platform.python_version()}",
        "runs": [],
    }
    runs: list[dict[str, Any]] = report["runs"]
    for i, n in enumerate(sorted(sizes)):
        with tempfile.TemporaryDirectory(prefix=f"bench-scale-{n}-") as tmp:
            print(f"N = {n:,} ...", file=sys.stderr, flush=True)
            soak = args.soak if n == max((x for x in sizes if x <= 1000), default=0) else 0
            run = measure(
                n,
                peers=peers and n <= args.peers_max,
                shards=i == 0,
                workdir=Path(tmp),
                soak=soak,
            )
            run["load_average"] = [round(x, 2) for x in os.getloadavg()]
            runs.append(run)
        report["slopes"] = slopes(runs)
        out.write_text(json.dumps(report, indent=1) + "\n")  # what was measured so far
    if args.tls:
        report["tls"] = run_tls_bench()
    text = markdown(report)
    print(text)
    out.write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(text)
    shards = [r["shards"] for r in runs if "shards" in r]
    return 0 if all(s["exactly_once"] for s in shards) else 1


if __name__ == "__main__":
    sys.exit(main())
