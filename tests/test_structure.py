"""The shape of the package, checked: what loads what, module size, private names, broad catches,
and state in probe modules (issue 15's rules, so they stay true)."""

from __future__ import annotations
import __future__

import ast
import dataclasses
import datetime
import enum
import functools
import importlib
import ipaddress
import logging
import pkgutil
import re
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

import exporter
import exporter.probes

PACKAGE = Path(exporter.__file__).parent
MAX_LINES = 650


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def loaded_after(statement: str) -> set[str]:
    """Modules a fresh interpreter has loaded after running ``statement``."""
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(out.split())


def test_config_loads_no_dns_and_no_probe() -> None:
    loaded = loaded_after("import exporter.config")
    assert not {m for m in loaded if m == "dns" or m.startswith("dns.")}
    assert not {m for m in loaded if m.startswith(("exporter.probes", "exporter.net.dns"))}


@pytest.mark.parametrize("module", ["exporter.collector", "exporter.web", "exporter.report"])
def test_rendering_loads_no_probe_no_runner_no_dns(module: str) -> None:
    loaded = loaded_after(f"import {module}")
    bad = {
        m
        for m in loaded
        if m in ("dns", "exporter.runner", "exporter.daemon")
        or m.startswith(("dns.", "exporter.probes", "exporter.net"))
    }
    assert not bad, f"importing {module} loads {sorted(bad)}"


def test_the_daemon_imports_a_probe_kind_only_when_configured() -> None:
    from exporter.probes import KINDS

    kinds = {module for module, _ in KINDS.values()}
    assert not kinds & loaded_after("import exporter.daemon, exporter.runner, exporter.check")
    config = "exporter.config.parse_config({'domains': [{'domain': 'example.com'}]})"
    loaded = loaded_after(f"import exporter.daemon; exporter.daemon.all_targets({config})")
    assert kinds & loaded == {"exporter.probes.dns"}


def test_no_module_over_the_size_limit() -> None:
    big = {
        str(p.relative_to(PACKAGE)): n
        for p in modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_no_private_name_imported_across_modules() -> None:
    found = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("exporter"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.relative_to(PACKAGE)}: {node.module}.{alias.name}")
    assert not found, found


BROAD = {"Exception", "BaseException"}


def _is_broad(handler: ast.ExceptHandler) -> bool:
    kind = handler.type
    if kind is None:
        return True
    names = kind.elts if isinstance(kind, ast.Tuple) else [kind]
    return any(isinstance(n, ast.Name) and n.id in BROAD for n in names)


def test_probes_catch_broadly_only_to_reraise() -> None:
    """The runner is the one broad catch; a probe may clean up on any exception, then re-raise."""
    found = []
    for path in sorted((PACKAGE / "probes").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler) and _is_broad(node):
                reraises = any(
                    isinstance(n, ast.Raise) and n.exc is None
                    for stmt in node.body
                    for n in ast.walk(stmt)
                )
                if not reraises:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not found, f"broad except without re-raise: {found}"


_IMMUTABLE = (
    str,
    bytes,
    int,
    float,
    bool,
    type(None),
    complex,
    range,
    re.Pattern,
    enum.Enum,
    datetime.date,
    datetime.timedelta,
    datetime.tzinfo,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
)
_CODE = (
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    type,
    functools.partial,
    typing.TypeVar,
    logging.Logger,
)


def _immutable(value: object, depth: int = 0) -> bool:
    if isinstance(value, (*_IMMUTABLE, *_CODE)) or value is Ellipsis:
        return True
    if isinstance(value, tuple | frozenset):
        return depth < 4 and all(_immutable(v, depth + 1) for v in value)
    if isinstance(value, types.MappingProxyType):
        return True
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        params = getattr(type(value), "__dataclass_params__", None)
        return bool(params and params.frozen)
    return False


def _stateless_object(value: object) -> bool:
    """A probe kind object or a resource-less helper: attributes all immutable."""
    attrs = getattr(value, "__dict__", None)
    if attrs is None:
        return False
    return all(_immutable(v) for v in vars(value).values())


def _probe_modules() -> list[types.ModuleType]:
    out = [exporter.probes]
    for info in pkgutil.walk_packages(exporter.probes.__path__, "exporter.probes."):
        out.append(importlib.import_module(info.name))
    return out


def test_no_module_level_mutable_state_in_probes() -> None:
    """State across runs is a per-config resource (``ProbeKind.resources``) or rows in the
    store. UPPER_CASE names are constant tables by convention and may be dicts; pure memoizing
    caches (``functools.lru_cache`` of a pure function) are allowed."""
    found = []
    for module in _probe_modules():
        for name, value in vars(module).items():
            if name.startswith("__") or _immutable(value):
                continue
            if isinstance(value, __future__._Feature) or type(value).__module__ == "typing":
                continue  # `from __future__ import annotations`, typing's special forms
            if typing.get_origin(value) is not None:
                continue  # a type alias
            if callable(value) and hasattr(value, "cache_info"):
                continue  # an lru_cache'd pure function
            if name.isupper() and isinstance(value, dict | list):
                continue  # a constant table
            if (name == "PROBE" or name.isupper()) and _stateless_object(value):
                continue
            found.append(f"{module.__name__}.{name} ({type(value).__name__})")
    assert not found, f"module-level state in probes: {found}"


def test_probe_kinds_keep_nothing_between_runs() -> None:
    from exporter.probes import PROBES

    for kind in PROBES.values():
        assert _stateless_object(kind), f"{kind.name}: {vars(kind)}"
