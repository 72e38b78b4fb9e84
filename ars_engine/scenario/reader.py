"""Typed reading of PyYAML nodes that keeps every problem with its file:line:column.

The loader composes the YAML into nodes (not Python objects) so that each value keeps its mark, then
reads them through a :class:`Reader`, which collects :class:`ScenarioError`s instead of stopping at
the first one. PyYAML silently keeps the last of two equal keys; the reader reports them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import ScenarioError

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_YAML11_BOOLS = frozenset({"yes", "no", "on", "off", "y", "n"})

Items = dict[str, tuple[ScalarNode, Node]]


def describe(node: Node) -> str:
    """Name a node's type the way an operator would: 'a mapping', 'the number 5'…"""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing"
    if node.tag == _BOOL:
        return f"the boolean {node.value}"
    if node.tag in (_INT, _FLOAT):
        return f"the number {node.value}"
    return "text"


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Reader:
    """Reads nodes of one file, collecting errors."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.errors: list[ScenarioError] = []
        self._constructor = SafeConstructor()

    # -- errors -------------------------------------------------------------------------------
    def error(self, node: Node | None, code: str, message: str) -> None:
        if node is None:
            line, column = 1, 1
        else:
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
        error = ScenarioError(self.path, line, column, code, message)
        if not any(str(e) == str(error) for e in self.errors[-8:]):  # one report per spot
            self.errors.append(error)

    def wrong_type(self, node: Node, what: str, expected: str) -> None:
        hint = ""
        if (isinstance(node, MappingNode) and node.flow_style and len(node.value) == 1
                and isinstance(node.value[0][0], ScalarNode) and node.value[0][1].tag == _NULL):
            # `text: {name}` unquoted: YAML reads a flow mapping, not a template.
            hint = f"; to use the template {{{node.value[0][0].value}}}, quote it: \"{{...}}\""
        if (node.tag == _BOOL and isinstance(node, ScalarNode)
                and node.value.lower() in _YAML11_BOOLS):
            hint = f"; YAML reads {node.value} as a boolean: quote it as \"{node.value}\""
        if node.tag == _NULL and "key" in expected:
            hint = "; note that # starts a YAML comment: quote it as \"#\""
        self.error(node, "wrong-type", f"{what}: expected {expected}, got {describe(node)}{hint}")

    # -- structure ----------------------------------------------------------------------------
    def mapping(self, node: Node, what: str, *,
                duplicate_code: str = "duplicate-key") -> Items | None:
        """The mapping's items by key; reports duplicates and non-text keys."""
        if not isinstance(node, MappingNode):
            self.wrong_type(node, what, "a mapping")
            return None
        items: Items = {}
        for key_node, value_node in node.value:
            # Keys are read as written: `on:` is a YAML 1.1 boolean but means the transitions.
            if not isinstance(key_node, ScalarNode) or key_node.tag == _NULL:
                self.wrong_type(key_node, f"{what} key", "text")
                continue
            key = str(key_node.value)
            if key in items:
                first = items[key][0].start_mark.line + 1
                noun = "step" if duplicate_code == "duplicate-step" else "key"
                self.error(key_node, duplicate_code,
                           f"{what}: {noun} '{key}' is given twice (first on line {first})")
                continue
            items[key] = (key_node, value_node)
        return items

    def check_keys(self, items: Items, what: str, allowed: Iterable[str],
                   required: Iterable[str] = (), owner: Node | None = None) -> None:
        """Report unknown keys (with a suggestion) and missing required keys."""
        allowed = list(allowed)
        for key, (key_node, _) in items.items():
            if key not in allowed:
                self.error(key_node, "unknown-key",
                           f"{what}: unknown key '{key}'{suggest(key, allowed)}; expected one of "
                           + ", ".join(allowed))
        for key in required:
            if key not in items:
                self.error(owner, "missing-key", f"{what}: missing required key '{key}'")

    def sequence(self, node: Node, what: str) -> list[Node] | None:
        if isinstance(node, SequenceNode):
            return list(node.value)
        self.wrong_type(node, what, "a list")
        return None

    # -- scalars ------------------------------------------------------------------------------
    def scalar(self, node: Node) -> Any:
        """The Python value of a scalar node (int, float, bool, None or str)."""
        return self._constructor.construct_object(node, deep=True)

    def pattern(self, node: Node, what: str) -> re.Pattern[str] | None:
        """A regular expression (``params.*.pattern``, ``check: pattern``); an error naming
        ``what`` when it does not compile, whatever ``re`` raises (a bad syntax, a repetition
        count beyond its limit, nesting too deep)."""
        source = self.text(node, what)
        if source is None:
            return None
        try:
            return re.compile(source)
        except (re.error, OverflowError, RecursionError) as exc:
            self.error(node, "invalid-value", f"{what}: not a regular expression: {exc}")
            return None

    def text(self, node: Node, what: str, *, allow_numbers: bool = False) -> str | None:
        """A text value. ``allow_numbers`` accepts 5 or 1.5 written unquoted (e.g. DTMF keys)."""
        if isinstance(node, ScalarNode):
            if node.tag == _STR:
                return str(node.value)
            if allow_numbers and node.tag in (_INT, _FLOAT):
                return str(node.value)
        self.wrong_type(node, what, "text")
        return None

    def identifier(self, node: Node, what: str) -> str | None:
        value = self.text(node, what)
        if value is not None and not _is_identifier(value):
            self.error(node, "invalid-value",
                       f"{what}: '{value}' is not a valid name (lowercase letters, digits and _, "
                       "starting with a letter)")
            return None
        return value

    def integer(self, node: Node, what: str, *, minimum: int | None = None,
                maximum: int | None = None) -> int | None:
        if not (isinstance(node, ScalarNode) and node.tag == _INT):
            self.wrong_type(node, what, "a whole number")
            return None
        value = int(self.scalar(node))
        return self._in_range(node, what, value, minimum, maximum)

    def number(self, node: Node, what: str, *, minimum: float | None = None,
               maximum: float | None = None, positive: bool = False) -> float | None:
        if not (isinstance(node, ScalarNode) and node.tag in (_INT, _FLOAT)):
            self.wrong_type(node, what, "a number of seconds" if "timeout" in what else "a number")
            return None
        value = float(self.scalar(node))
        if positive and value <= 0:
            self.error(node, "invalid-value", f"{what}: must be greater than 0, got {node.value}")
            return None
        return self._in_range(node, what, value, minimum, maximum)

    def boolean(self, node: Node, what: str) -> bool | None:
        if isinstance(node, ScalarNode) and node.tag == _BOOL:
            return bool(self.scalar(node))
        self.wrong_type(node, what, "true or false")
        return None

    def _in_range(self, node: Node, what: str, value: Any, minimum: Any, maximum: Any) -> Any:
        if minimum is not None and value < minimum:
            self.error(node, "invalid-value",
                       f"{what}: must be at least {minimum}, got {node.value}")
            return None
        if maximum is not None and value > maximum:
            self.error(node, "invalid-value",
                       f"{what}: must be at most {maximum}, got {node.value}")
            return None
        return value


def _is_identifier(value: str) -> bool:
    return bool(value) and value[0].isascii() and value[0].isalpha() and all(
        c.isascii() and (c.isalnum() or c == "_") for c in value) and value == value.lower()


def is_identifier(value: str) -> bool:
    """True for names such as ``enter_code`` (lowercase ASCII, digits, _; starts with a letter)."""
    return _is_identifier(value)
