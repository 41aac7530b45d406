"""The command line: ``deliverability-exporter`` (also ``python -m exporter``).

Without a subcommand it runs the daemon. Prometheus-style flags (``--config.file``,
``--web.listen-address``...) come first; subcommands (``spf``...) follow them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from exporter import __version__
from exporter.config import ConfigError, load_config
from exporter.logs import LEVELS, setup_logging
from exporter.net.addr import split_host_port

DEFAULT_LISTEN = ":9866"
"""The default port, 9866, is this exporter's fixed documented port."""

DEFAULT_STORAGE_PATH = "data/"
"""Relative to the working directory; the container image mounts a volume there."""

log = logging.getLogger("exporter")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deliverability-exporter",
        description="Prometheus exporter for email deliverability.",
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default="config.yaml",
        help="YAML config file (default: config.yaml)",
    )
    parser.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the config, print every problem, exit 0 or 1",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen",
        default=DEFAULT_LISTEN,
        help=f"address to serve HTTP on (default: {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config",
        default=None,
        help="TLS and basic auth config (Prometheus exporter-toolkit format)",
    )
    parser.add_argument(
        "--storage.path",
        dest="storage_path",
        default=DEFAULT_STORAGE_PATH,
        metavar="DIR",
        help="where state that survives a restart is kept, a SQLite file"
        f" (default: {DEFAULT_STORAGE_PATH})",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="enable POST /-/reload (off by default, as in Prometheus; SIGHUP always reloads)",
    )
    parser.add_argument(
        "--shard",
        dest="shard",
        default=None,
        metavar="I/N",
        help="run only shard I of N (targets split by a stable hash)",
    )
    parser.add_argument("--log.level", dest="log_level", default="info", choices=list(LEVELS))
    parser.add_argument(
        "--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"]
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_subcommands(sub)
    return parser  # fmt: skip


def _add_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from exporter import check, demo

    # check's own usage errors exit 3 (UNKNOWN): 1 and 2 mean warning and critical there.
    sub._parser_class, plain = check.CheckArgumentParser, sub._parser_class
    try:
        chk = sub.add_parser(
            "check", help="run the probes once and print a diagnosis with fixes (exit 0/1/2/3)"
        )
    finally:
        sub._parser_class = plain
    check.add_arguments(chk)
    chk.set_defaults(handler=check.run)
    dem = sub.add_parser("demo", help="start an offline lab with sample defects and serve it")
    demo.add_arguments(dem)
    dem.set_defaults(handler=demo.run)
    from exporter.spf import command as spf_command

    spf = sub.add_parser("spf", help="evaluate RFC 7208 check_host() for an IP and sender")
    spf_command.add_arguments(spf)
    spf.set_defaults(handler=spf_command.run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    handler = getattr(args, "handler", None)
    if handler is not None:
        return int(handler(args))
    if args.config_check:
        return _config_check(args.config_file)
    return _serve(args)


def _config_check(path: str) -> int:
    """What the daemon does at start up to serving: parse the config and build all it needs."""
    from exporter.daemon import plan

    try:
        plan(load_config(path))
    except ConfigError as exc:
        _print_problems(path, exc)
        return 1
    print(f"{path}: config is valid")
    return 0


def _print_problems(path: str, exc: ConfigError) -> None:
    print(f"{path}: invalid config:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def _serve(args: argparse.Namespace) -> int:
    from exporter.daemon import Exporter, Shard, plan, serve
    from exporter.runner import run_event_loop
    from exporter.webconfig import WebConfigError, load_web_config

    try:
        config = load_config(args.config_file)
        plan(config)  # what can fail at start fails here, with the message --config.check gives
    except ConfigError as exc:
        _print_problems(args.config_file, exc)
        return 1
    try:
        # ":9866" (the default) means every interface, as in Prometheus.
        listen = args.listen
        host, port = split_host_port("0.0.0.0" + listen if listen.startswith(":") else listen)
    except ValueError as exc:
        print(f"--web.listen-address: {exc}", file=sys.stderr)
        return 1
    try:
        web = load_web_config(args.web_config) if args.web_config else None
    except WebConfigError as exc:
        print(f"--web.config.file: {exc}", file=sys.stderr)
        return 1
    try:
        shard = Shard.parse(args.shard) if args.shard else None
    except ValueError as exc:
        print(f"--shard: {exc}", file=sys.stderr)
        return 1
    from exporter.storage import Store, StoreError

    try:
        store = Store.open_sync(args.storage_path)
    except StoreError as exc:
        print(f"--storage.path: {exc}", file=sys.stderr)
        return 1
    exporter = Exporter(
        config_path=Path(args.config_file),
        config=config,
        shard=shard,
        store=store,
        lifecycle=args.enable_lifecycle,
    )
    auth = web.basic_auth() if web and web.users else None
    try:
        run_event_loop(
            serve(
                exporter,
                host or "0.0.0.0",
                port,
                ssl_context=web.ssl_context() if web else None,
                middlewares=[auth.middleware] if auth else None,
            )
        )
    except OSError as exc:
        print(f"cannot serve on {args.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        if auth is not None:
            auth.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
