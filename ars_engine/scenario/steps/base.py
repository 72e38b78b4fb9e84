"""What every step kind shares: parsing context, variable uses, transitions, the run contract.

A step kind is a class registered under its YAML key (``play``, ``gather``…). It parses its own
value (collecting errors in the :class:`Reader`), declares the outcomes it can produce, the
variables it reads and writes (for the validator), and runs against a :class:`CallContext`.
"""

from __future__ import annotations

import enum
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from yaml.nodes import Node

from ..reader import Reader
from ..templating import Template, TemplateSyntaxError

if TYPE_CHECKING:
    from ..context import CallContext


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


class Step:
    """Base of every step kind.

    Subclasses set ``kind``, ``keys`` (allowed keys inside the kind's value, for typo checks) and
    implement :meth:`parse`, :meth:`outcomes` and :meth:`run`.
    """

    kind: ClassVar[str] = ""
    media: ClassVar[bool] = True  # needs the line up (refused after the callee hung up)

    def __init__(self, step_id: str, node: Node) -> None:
        self.id = step_id
        self.node = node  # the step's id key node (for error marks)
        self.kind_node: Node = node
        self.transitions: dict[str, str] = {}  # outcome -> step id
        self.transition_nodes: dict[str, Node] = {}

    def parse(self, value: Node, ctx: ParseContext) -> None:
        raise NotImplementedError

    def outcomes(self) -> tuple[str, ...]:
        """Every outcome :meth:`run` may return."""
        raise NotImplementedError

    def internal_targets(self) -> dict[str, tuple[str, Node]]:
        """Targets written inside the kind's value (retry, branch): outcome -> (step, node)."""
        return {}

    @property
    def terminal(self) -> bool:
        return not self.outcomes()

    async def run(self, ctx: CallContext) -> str:
        """Run the step; return its outcome (ignored for terminal steps)."""
        raise NotImplementedError

    def cancel(self) -> None:  # noqa: B027 - optional hook
        """Release what an interrupted run holds (most kinds hold nothing)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"


STEP_KINDS: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    STEP_KINDS[cls.kind] = cls
    return cls
