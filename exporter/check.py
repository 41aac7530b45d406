"""``deliverability-exporter check [DOMAIN ...]``: run the probes once and explain what is wrong.

With domain names, no config is read: the ``dns`` probe (and the ``dnsbl`` probe's domain zones,
when that probe is registered) runs for each name. Without names, every target of the config
file (``--config.file``, given before or after ``check``) runs once. Targets run concurrently,
at most ``--concurrency`` at a time, each through :func:`exporter.runner.run_probe` exactly as
the daemon runs them, so the report and ``/metrics`` never disagree.

Exit codes (the Nagios plugin convention): 0 nothing to act on (info findings at most),
1 a warning or a probe that could not tell, 2 a critical finding, 3 nothing could be checked
(config or command-line error, no targets).
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import logging
import os
import shutil
import sys
import time
from typing import Any, NoReturn, TextIO

from exporter.config import DEFAULT_DOMAIN_ZONES, Config, ConfigError, load_config, parse_config
from exporter.net.limiter import Limiter
from exporter.report import Report, render_json, render_text
from exporter.results import RunRecord, Target
from exporter.runner import Runtime, run_event_loop, run_probe

EXIT_UNKNOWN = 3
DEFAULT_CONCURRENCY = 8


class CheckArgumentParser(argparse.ArgumentParser):
    """Usage errors exit 3 (UNKNOWN), since 2 means "critical finding" for ``check``."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_UNKNOWN, f"{self.prog}: error: {message}\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "domains",
        nargs="*",
        metavar="DOMAIN",
        help="check these domains (DNS authentication, domain blacklists, MTA-STS and TLS-RPT)"
        " without a config",
    )
    parser.add_argument(
        "--config.file",
        dest="check_config_file",
        default=None,
        metavar="PATH",
        help="config whose every target runs once (default: the global --config.file)",
    )
    parser.add_argument(
        "--nameserver",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="resolver to use (repeatable); replaces global.nameservers of the config",
    )
    parser.add_argument(
        "--no-dnssec",
        dest="no_dnssec",
        action="store_true",
        help="do not validate DNSSEC (for resolvers that strip DNSSEC records); sets"
        " global.dnssec: false",
    )
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="text report: also show what was seen for passing targets, and long values whole",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"targets probed at once (default {DEFAULT_CONCURRENCY})",
    )


def build_config(args: argparse.Namespace) -> Config:
    """The config to check: ad hoc for named domains, else the config file; raise ConfigError."""
    nameservers: list[str] = list(args.nameserver)
    if args.domains:
        data = {
            "global": {"nameservers": nameservers, "dnssec": not args.no_dnssec},
            "domains": [{"domain": d} for d in args.domains],
            # Domain zones only: with no config there are no sending IPs to look up.
            "blacklists": {"ip_zones": [], "domain_zones": list(DEFAULT_DOMAIN_ZONES)},
            "mta_sts": {},
        }
        try:
            return parse_config(data)
        except ConfigError as exc:
            raise ConfigError([_argument_problem(p, args.domains) for p in exc.problems]) from None
    path = args.check_config_file or args.config_file
    config = load_config(path)
    if nameservers:
        try:
            glob = parse_config({"global": {"nameservers": nameservers}}).global_
        except ConfigError as exc:
            raise ConfigError([_argument_problem(p, []) for p in exc.problems]) from None
        config = config.model_copy(
            update={"global_": config.global_.model_copy(update={"nameservers": glob.nameservers})}
        )
    if args.no_dnssec:
        config = config.model_copy(
            update={"global_": config.global_.model_copy(update={"dnssec": False})}
        )
    return config


def _argument_problem(problem: str, domains: list[str]) -> str:
    """Config key paths of an ad hoc config, told as the command-line arguments they came from."""
    if problem.startswith("global.nameservers"):
        return "--nameserver" + problem.partition("]")[2]
    if problem.startswith("domains["):
        index = int(problem[len("domains[") :].partition("]")[0])
        rest = problem.partition(":")[2].strip()
        return f"DOMAIN {domains[index]!r}: {rest}"
    return problem


class Progress:
    """A one-line progress indicator on a terminal (stderr); silent when not a TTY."""

    def __init__(self, stream: TextIO, total: int, enabled: bool) -> None:
        self.stream = stream
        self.total = total
        self.enabled = enabled
        self.done = 0
        self.running: dict[tuple[str, str], None] = {}

    def start(self, target: Target[Any]) -> None:
        self.running[target.key] = None
        self._draw()

    def finish(self, target: Target[Any]) -> None:
        self.running.pop(target.key, None)
        self.done += 1
        self._draw()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _draw(self) -> None:
        if not self.enabled:
            return
        names = ", ".join(f"{p} {n}" for p, n in self.running)
        line = f"[{self.done}/{self.total}] checking {names}" if names else f"[{self.done}/"
        if not names:
            line += f"{self.total}] done"
        width = shutil.get_terminal_size((80, 24)).columns
        if len(line) > width - 1:
            line = line[: max(0, width - 2)] + "…"
        self.stream.write("\r\033[K" + line)
        self.stream.flush()


async def run_targets(
    targets: list[Target[Any]],
    config: Config,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress | None = None,
) -> list[RunRecord]:
    """Run every target once (at most ``concurrency`` at a time); records in target order."""
    from exporter.probes import PROBES

    # No store: a one-shot run must not consume report mail or queue messages (SPEC.md).
    runtime = Runtime.for_config(config, store=None)
    limit = Limiter(max(1, concurrency))

    async def one(target: Target[Any]) -> RunRecord:
        async with limit:
            if progress:
                progress.start(target)
            try:
                return await run_probe(PROBES[target.probe], target, runtime)
            finally:
                if progress:
                    progress.finish(target)

    try:
        return list(await asyncio.gather(*(one(t) for t in targets)))
    finally:
        await runtime.aclose()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _wants_colour(stream: TextIO) -> bool:
    return _is_tty(stream) and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def _can_encode(stream: TextIO, text: str) -> bool:
    try:
        codecs.encode(text, getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def run(args: argparse.Namespace) -> int:
    """The ``check`` command's entry point; returns the exit code."""
    # The report shows every probe error; the runner's warning lines would only repeat them.
    root = logging.getLogger()
    level = root.level
    if level > logging.DEBUG:
        root.setLevel(logging.ERROR)
    try:
        return _run(args)
    finally:
        root.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    from exporter.daemon import plan

    try:
        config = build_config(args)
        targets, _ = plan(config)  # what the daemon builds: a config it cannot run fails here
    except ConfigError as exc:
        where = "check" if args.domains else (args.check_config_file or args.config_file)
        print(f"{where}: invalid config:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_UNKNOWN
    if not targets:
        print("check: nothing to check: the config has no targets", file=sys.stderr)
        return EXIT_UNKNOWN
    progress = Progress(sys.stderr, len(targets), enabled=_is_tty(sys.stderr))
    started = time.time()
    t0 = time.perf_counter()
    try:
        records = run_event_loop(
            run_targets(targets, config, concurrency=args.concurrency, progress=progress)
        )
    except KeyboardInterrupt:
        progress.clear()
        print("check: interrupted", file=sys.stderr)
        return 130
    progress.clear()
    report = Report.of(records, started=started, duration=time.perf_counter() - t0)
    if args.format == "json":
        sys.stdout.write(render_json(report))
    else:
        out = sys.stdout
        tty = _is_tty(out)
        width = shutil.get_terminal_size((100, 24)).columns if tty else 100
        sys.stdout.write(
            render_text(
                report,
                colour=_wants_colour(out),
                width=width,
                unicode=_can_encode(out, "✓✗…"),
                verbose=args.verbose,
            )
        )
    sys.stdout.flush()
    return report.exit_code
