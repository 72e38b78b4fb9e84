"""What every step kind shares: parsing context, variable uses, transitions, the run contract.

A step kind is a class registered under its YAML key (``play``, ``gather``…). It parses its own
value (collecting errors in the :class:`Reader`), declares the outcomes it can produce, the
variables it reads and writes (for the validator), and runs against a :class:`CallContext`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from yaml.nodes import Node

from ..parsing import ParseContext
from ..reader import Items

if TYPE_CHECKING:
    from ..context import CallContext


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

    def read_mapping(self, value: Node, ctx: ParseContext, allowed: tuple[str, ...],
                     required: tuple[str, ...] = ()) -> Items | None:
        """The kind's value as a mapping, with unknown and missing keys reported."""
        what = f"step '{self.id}': {self.kind}"
        items = ctx.reader.mapping(value, what)
        if items is not None:
            ctx.reader.check_keys(items, what, allowed, required=required, owner=self.kind_node)
        return items

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

    def cancel(self) -> None:
        """Release what an interrupted run holds (most kinds hold nothing)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"


STEP_KINDS: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    STEP_KINDS[cls.kind] = cls
    return cls
