"""``finish`` ends the call with an outcome and result fields; ``hangup`` hangs up the line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from yaml.nodes import Node, ScalarNode

from ..parsing import ParseContext, Use
from ..reader import is_identifier
from ..templating import Template
from .base import Step, register

if TYPE_CHECKING:
    from ..context import CallContext

FINISH_KEYS = ("outcome", "result")
_JSON_SCALARS = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _outcome(node: Node, ctx: ParseContext, what: str) -> str | None:
    outcome = ctx.reader.text(node, what)
    if outcome is not None and not is_identifier(outcome):
        ctx.reader.error(node, "invalid-value",
                         f"{what}: '{outcome}' is not an outcome word (a-z, 0-9, _)")
        return None
    return outcome


@register
class Finish(Step):
    kind = "finish"
    media = False

    def __init__(self, step_id: str, node: Node) -> None:
        super().__init__(step_id, node)
        self.outcome = "success"
        self.result: dict[str, Template | object] = {}

    def parse(self, value: Node, ctx: ParseContext) -> None:
        r = ctx.reader
        what = f"step '{self.id}': finish"
        items = self.read_mapping(value, ctx, FINISH_KEYS, ("outcome",))
        if items is None:
            return
        if "outcome" in items:
            self.outcome = _outcome(items["outcome"][1], ctx, f"{what}.outcome") or self.outcome
        if "result" in items:
            fields = r.mapping(items["result"][1], f"{what}.result") or {}
            for key, (_, node) in fields.items():
                if isinstance(node, ScalarNode) and node.tag in _JSON_SCALARS:
                    self.result[key] = r.scalar(node)  # keep JSON types for true/false/numbers
                    continue
                template = ctx.template(node, f"{what}.result.{key}", Use.OUTPUT)
                if template is not None:
                    self.result[key] = template

    def outcomes(self) -> tuple[str, ...]:
        return ()

    async def run(self, ctx: CallContext) -> str:
        result = {k: (v.render(ctx.variables) if isinstance(v, Template) else v)
                  for k, v in self.result.items()}
        ctx.finish(self.outcome, result)
        ctx.event("finished", {"outcome": self.outcome})
        return ""


@register
class Hangup(Step):
    kind = "hangup"
    media = False

    def __init__(self, step_id: str, node: Node) -> None:
        super().__init__(step_id, node)
        self.outcome: str | None = None
        self.has_next = False

    def parse(self, value: Node, ctx: ParseContext) -> None:
        what = f"step '{self.id}': hangup"
        if value.tag == "tag:yaml.org,2002:null":
            return
        items = self.read_mapping(value, ctx, ("outcome",))
        if items is None:
            return
        if "outcome" in items:
            self.outcome = _outcome(items["outcome"][1], ctx, f"{what}.outcome")

    def outcomes(self) -> tuple[str, ...]:
        return ("done",) if self.has_next else ()

    async def run(self, ctx: CallContext) -> str:
        if not ctx.hung_up:
            await ctx.channel.hangup()
            ctx.hung_up = True
            ctx.event("hangup", {"by": "engine"})
        if not self.has_next:
            ctx.finish(self.outcome or "hangup")
            ctx.event("finished", {"outcome": ctx.outcome})
        return "done"
