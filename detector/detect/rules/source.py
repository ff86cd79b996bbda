"""Reading one rule file: YAML with positions, duplicate keys rejected, and offsets mapped to file:line.

``RuleYamlLoader`` is PyYAML's ``SafeLoader`` (no Python object tags) that refuses a mapping with the
same key twice, aliases (``*name``: an alias "bomb" is a few lines that expand exponentially) and
nesting deeper than ``MAX_YAML_DEPTH`` (PyYAML composes recursively), and reports a value PyYAML cannot
build (``2024-13-45``, a 5000-digit integer) as a YAML error at its position. ``read_rule_yaml`` keeps
the composed node tree next to the constructed data so every later error (a pydantic error path, a
position inside the condition) can point at a line and column.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.error import Mark, MarkedYAMLError
from yaml.events import AliasEvent, Event
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from detector.detect.rules.errors import RuleError

#: Deepest nesting of mappings and lists; a rule file needs 5 (tests -> test -> features -> value).
MAX_YAML_DEPTH = 32


class RuleYamlLoader(yaml.SafeLoader):
    """A ``SafeLoader`` that rejects duplicate keys in any mapping (pySigma's loader does the same),
    aliases and deep nesting, and turns a value it cannot construct into a ``ConstructorError``."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        """Compose one node, refusing aliases and nesting deeper than ``MAX_YAML_DEPTH``."""
        event: Event = self.peek_event()  # type: ignore[no-untyped-call]
        mark = event.start_mark if isinstance(event.start_mark, Mark) else None
        if isinstance(event, AliasEvent):
            raise ComposerError(None, None, "aliases (*name) are not allowed here", mark)
        if self._depth >= MAX_YAML_DEPTH:
            raise ComposerError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", mark)
        self._depth += 1
        try:
            node: Node | None = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        return node

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        """Build one value; PyYAML's own ``ValueError`` (a bad date, a huge integer) gets a position."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            raise ConstructorError(None, None, f"cannot read value: {exc}", node.start_mark) from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        """Build a mapping, failing at the second occurrence of a key."""
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


@dataclass(frozen=True, slots=True)
class RuleSource:
    """A parsed rule file: the text, the root node and the constructed data (a mapping)."""

    path: Path
    text: str
    root: MappingNode
    data: dict[str, Any]

    def error(self, mark: Mark | None, message: str) -> RuleError:
        """A ``RuleError`` at ``mark`` (the top of the file where there is none)."""
        if mark is None:
            return RuleError(self.path, 1, 1, message)
        return RuleError(self.path, mark.line + 1, mark.column + 1, message)

    def node_at(self, loc: Sequence[str | int], *, key: bool = False) -> Node:
        """The node for a data path like ``("tests", 0, "expect")``; the deepest existing node if absent.

        With ``key`` the last step's key node is returned instead of its value (for unknown keys).
        """
        node: Node = self.root
        for i, step in enumerate(loc):
            last = i == len(loc) - 1
            if isinstance(node, MappingNode):
                for key_node, value_node in node.value:
                    if isinstance(key_node, ScalarNode) and key_node.value == str(step):
                        node = key_node if (last and key) else value_node
                        break
                else:
                    return node
            elif isinstance(node, SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
                node = node.value[step]
            else:
                return node
        return node

    def position_in_scalar(self, node: Node, offset: int) -> tuple[int, int]:
        """1-based (line, column) in the file of character ``offset`` of a scalar's value.

        Works for plain, quoted and block scalars by aligning the value with the source text (folding
        only ever turns source whitespace into one space); falls back to the scalar's start.
        """
        start = (node.start_mark.line + 1, node.start_mark.column + 1)
        if not isinstance(node, ScalarNode) or not isinstance(node.value, str):
            return start
        value: str = node.value
        base = node.start_mark.index
        src = self.text[base : node.end_mark.index]
        offset = max(0, min(offset, len(value)))
        j = 0
        for i in range(offset + 1):
            if i == len(value):  # the end of the value, e.g. "expected a value, got end of condition"
                return self._line_col(base + j)
            ch = value[i]
            while j < len(src) and not (src[j] == ch or (ch.isspace() and src[j].isspace())):
                j += 1
            if j >= len(src):
                return start
            if i == offset:
                return self._line_col(base + j)
            j += 1
        return start

    def _line_col(self, index: int) -> tuple[int, int]:
        line = self.text.count("\n", 0, index) + 1
        column = index - (self.text.rfind("\n", 0, index) + 1) + 1
        return line, column


def _duplicate_keys(node: Node, found: list[tuple[Mark, str]]) -> None:
    if isinstance(node, MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode):
                if key_node.value in seen:
                    found.append((key_node.start_mark, key_node.value))
                seen.add(key_node.value)
            _duplicate_keys(value_node, found)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            _duplicate_keys(item, found)


def read_rule_yaml(path: Path) -> tuple[RuleSource | None, list[RuleError]]:
    """Read and parse one rule file; returns the source or every error found (duplicate keys: all of them)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [RuleError(path, None, None, f"cannot read rule file: {exc}")]
    loader = RuleYamlLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, [RuleError(path, 1, 1, "empty rule file")]
        if not isinstance(root, MappingNode):
            mark = root.start_mark
            return None, [
                RuleError(path, mark.line + 1, mark.column + 1, "a rule file must be a mapping of keys")
            ]
        duplicates: list[tuple[Mark, str]] = []
        _duplicate_keys(root, duplicates)
        if duplicates:
            return None, [
                RuleError(path, m.line + 1, m.column + 1, f"duplicate key '{key}'") for m, key in duplicates
            ]
        data = loader.construct_document(root)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        return None, [RuleError(path, line, column, f"invalid YAML: {problem}")]
    except yaml.YAMLError as exc:
        return None, [RuleError(path, None, None, f"invalid YAML: {exc}")]
    finally:
        loader.dispose()
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        return None, [RuleError(path, 1, 1, "a rule file must be a mapping with string keys")]
    return RuleSource(path, text, root, data), []
