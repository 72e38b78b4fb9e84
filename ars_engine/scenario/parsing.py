"""Parse-time context shared by the loader, the step kinds and play parts.

Steps record how they use variables (:class:`VarUse`) and which they define (:class:`VarDef`);
the validator checks declarations, types and secrets from these lists.
"""

from __future__ import annotations

import enum
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path

from yaml.nodes import Node

from .reader import Reader
from .templating import Template, TemplateSyntaxError


class Use(enum.Enum):
    """How a step uses a variable; the validator checks secrets and types against it."""

    TTS = "tts"  # spoken by a TTS engine: no secrets
    DIGITS = "digits"  # spoken digit by digit from clips: secrets allowed
    AMOUNT = "amount"  # spoken as won from clips
    OUTPUT = "output"  # leaves the engine or is shown (results, webhook data, URLs): no secrets
    CHECK_INPUT = "check_input"
    CHECK_EQUALS = "check_equals"
    CHECK_HASH = "check_hash"
    BRANCH = "branch"  # compared with case labels that end up in timelines: no secrets
    SET = "set"  # copied into another variable (secrecy propagates)


@dataclass(frozen=True, slots=True)
class VarUse:
    name: str
    use: Use
    node: Node
    target: str | None = None  # for Use.SET: the variable assigned


@dataclass(frozen=True, slots=True)
class VarDef:
    name: str
    node: Node
    secret: bool = False
    source: str = "set"  # "gather", "set", "save"


@dataclass(slots=True)
class ParseContext:
    """What a step parser may look at: the reader, known prompts, the scenario folder."""

    reader: Reader
    prompts: Container[str] | None
    base_dir: Path | None
    uses: list[VarUse] = field(default_factory=list)
    defs: list[VarDef] = field(default_factory=list)

    def template(self, node: Node, what: str, use: Use, *, target: str | None = None,
                 allow_numbers: bool = True) -> Template | None:
        """Parse a template value and note the variables it uses."""
        text = self.reader.text(node, what, allow_numbers=allow_numbers)
        if text is None:
            return None
        try:
            template = Template.parse(text)
        except TemplateSyntaxError as exc:
            self.reader.error(node, "invalid-value", f"{what}: bad template: {exc}")
            return None
        for name in template.names:
            self.uses.append(VarUse(name, use, node, target))
        return template

    def variable(self, node: Node, what: str, use: Use) -> str | None:
        """A variable name (not a template) and its use."""
        name = self.reader.text(node, what)
        if name is None:
            return None
        if name.startswith("{") and name.endswith("}"):
            name = name[1:-1].strip()
        self.uses.append(VarUse(name, use, node))
        return name
