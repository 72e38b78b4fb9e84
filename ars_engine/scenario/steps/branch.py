"""``branch``: go to the step whose case equals a variable's value, else ``default``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from yaml.nodes import Node

from ..parsing import ParseContext, Use
from .base import Step, register

if TYPE_CHECKING:
    from ..context import CallContext

BRANCH_KEYS = ("var", "cases", "default")


@register
class Branch(Step):
    kind = "branch"
    media = False

    def __init__(self, step_id: str, node: Node) -> None:
        super().__init__(step_id, node)
        self.var: str | None = None
        self.targets: dict[str, tuple[str, Node]] = {}
        self.cases: dict[str, str] = {}  # value -> outcome name

    def parse(self, value: Node, ctx: ParseContext) -> None:
        r = ctx.reader
        what = f"step '{self.id}': branch"
        items = self.read_mapping(value, ctx, BRANCH_KEYS, ("var", "cases", "default"))
        if items is None:
            return
        if "var" in items:
            self.var = ctx.variable(items["var"][1], f"{what}.var", Use.BRANCH)
        if "cases" in items:
            cases = r.mapping(items["cases"][1], f"{what}.cases")
            for label, (_, target_node) in (cases or {}).items():
                target = r.text(target_node, f"{what}.cases.{label}")
                if target is not None:
                    outcome = f"case {label}"
                    self.cases[label] = outcome
                    self.targets[outcome] = (target, target_node)
            if cases is not None and not cases:
                r.error(items["cases"][1], "invalid-value", f"{what}.cases: no case given")
        if "default" in items:
            target = r.text(items["default"][1], f"{what}.default")
            if target is not None:
                self.targets["default"] = (target, items["default"][1])

    def internal_targets(self) -> dict[str, tuple[str, Node]]:
        return self.targets

    def outcomes(self) -> tuple[str, ...]:
        return (*self.cases.values(), "default")

    async def run(self, ctx: CallContext) -> str:
        value = str(ctx.variables.get(self.var or "", ""))
        outcome = self.cases.get(value, "default")
        ctx.event("branch", {"value": value, "to": self.transitions.get(outcome, "")})
        return outcome
