"""``set``: assign templates to variables (a value built from a secret stays secret)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from yaml.nodes import Node

from ..parsing import ParseContext, Use, VarDef
from ..templating import Template
from .base import Step, register

if TYPE_CHECKING:
    from ..context import CallContext


@register
class SetVariables(Step):
    kind = "set"
    media = False

    def __init__(self, step_id: str, node: Node) -> None:
        super().__init__(step_id, node)
        self.values: dict[str, Template] = {}

    def parse(self, value: Node, ctx: ParseContext) -> None:
        r = ctx.reader
        what = f"step '{self.id}': set"
        items = r.mapping(value, what)
        if items is None:
            return
        if not items:
            r.error(value, "invalid-value", f"{what}: nothing to set")
        for name, (key_node, value_node) in items.items():
            if r.identifier(key_node, f"{what} variable") is None:
                continue
            template = ctx.template(value_node, f"{what}.{name}", Use.SET, target=name)
            if template is not None:
                self.values[name] = template
                ctx.defs.append(VarDef(name, key_node, False, "set"))

    def outcomes(self) -> tuple[str, ...]:
        return ("done",)

    async def run(self, ctx: CallContext) -> str:
        for name, template in self.values.items():
            ctx.variables[name] = template.render_value(ctx.variables)
        return "done"
