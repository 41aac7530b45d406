"""YAML for the config files: PyYAML's safe loader, refusing duplicate mapping keys.

YAML 1.2 says keys are unique, but PyYAML keeps the last of two equal keys without a word, so
``domains:`` written twice silently drops the first list. :class:`UniqueKeyLoader` subclasses the
C safe loader when libyaml is there (parsing stays in C: seconds faster on a 10,000-domain file;
only mapping construction, already Python, gains one set per mapping) and raises a
:class:`yaml.constructor.ConstructorError` at the second key's line and column. Keys brought in by
a merge (``<<: *defaults``) may be overridden, as YAML intends.

:func:`load_yaml` also decodes the bytes itself, so a file that is not UTF-8 is one clear
:class:`YamlError` with its position, never a ``UnicodeDecodeError`` traceback; reads at most
:data:`MAX_FILE_BYTES`; and an integer too long for Python's ``int()`` (more than 4,300 digits,
a ``ValueError`` from deep inside the constructor) is a :class:`YamlError` naming its key path,
line and column.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from exporter.config.files import read_regular_file

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE = "tag:yaml.org,2002:merge"
_INT = "tag:yaml.org,2002:int"
MAX_FILE_BYTES = 8 * 1024 * 1024
"""A config file larger than this is refused unread (a 10,000-domain config is about 1 MB)."""


class _HugeInteger(yaml.constructor.ConstructorError):
    """An integer scalar that ``int()`` refuses (too many digits)."""


class UniqueKeyLoader(_Base):  # type: ignore[valid-type,misc]
    """The safe loader (C when available) with duplicate mapping keys as errors."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        if isinstance(node, MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # unhashable: the base class reports it
                if duplicate:
                    raise ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {key!r}", key_node.start_mark,
                    )  # fmt: skip
        result: dict[Hashable, Any] = super().construct_mapping(node, deep=deep)
        return result

    def construct_huge_safe_int(self, node: ScalarNode) -> int:
        try:
            value: int = self.construct_yaml_int(node)
        except ValueError:
            digits = sum(c.isdigit() for c in str(node.value))
            raise _HugeInteger(None, None, f"integer of {digits} digits", node.start_mark) from None
        return value


UniqueKeyLoader.add_constructor(_INT, UniqueKeyLoader.construct_huge_safe_int)


class YamlError(ValueError):
    """The file cannot be read as YAML; the message names the line and column when known."""


def load_yaml(path: str | Path) -> Any:
    """Read ``path`` (UTF-8) and parse it; raise :class:`OSError` or :class:`YamlError`."""
    raw = read_regular_file(path, MAX_FILE_BYTES)  # never blocks on a FIFO
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlError(
            f"line {line}, column {column}: not UTF-8 text (byte offset {exc.start}); "
            "save the file as UTF-8"
        ) from None
    return parse_yaml(text)


def parse_yaml(text: str) -> Any:
    """Parse YAML text; raise :class:`YamlError` naming the problem and where it is."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except _HugeInteger as exc:
        at = exc.problem_mark
        assert at is not None
        where = _key_path(yaml.compose(text, Loader=_Base), at.index)
        raise YamlError(
            f"{where + ': ' if where else ''}line {at.line + 1}, column {at.column + 1}:"
            f" {exc.problem}; a number here has at most a few digits"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlError(f"{where}invalid YAML: {problem}") from None


def _key_path(node: Node | None, index: int) -> str:
    """The key path (``queues[0].thresholds.deferred``) of the scalar that starts at ``index``.
    Each node is visited once: aliases make a graph whose paths can be exponentially many."""
    seen: set[int] = set()
    todo: list[tuple[Node, str]] = [] if node is None else [(node, "")]
    while todo:
        node, path = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode) and node.start_mark.index == index:
            return path
        if isinstance(node, MappingNode):
            children = [(v, f"{path}.{k.value}" if path else str(k.value)) for k, v in node.value]
        elif isinstance(node, SequenceNode):
            children = [(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        else:
            continue
        todo.extend(reversed(children))  # document order
    return ""
