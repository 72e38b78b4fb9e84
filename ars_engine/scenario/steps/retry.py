"""``retry``: the only way to loop. Counts its visits; within ``max`` goes ``again``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from yaml.nodes import Node

from ..parsing import ParseContext
from ..parts import Part, parse_parts
from .base import Step, register

if TYPE_CHECKING:
    from ..context import CallContext

RETRY_KEYS = ("max", "prompt", "again", "exhausted")


@register
class Retry(Step):
    kind = "retry"

    def __init__(self, step_id: str, node: Node) -> None:
        super().__init__(step_id, node)
        self.max = 0
        self.prompt: tuple[Part, ...] = ()
        self.targets: dict[str, tuple[str, Node]] = {}

    def parse(self, value: Node, ctx: ParseContext) -> None:
        r = ctx.reader
        what = f"step '{self.id}': retry"
        items = self.read_mapping(value, ctx, RETRY_KEYS, ("max", "again", "exhausted"))
        if items is None:
            return
        if "max" in items:
            self.max = r.integer(items["max"][1], f"{what}.max", minimum=0, maximum=100) or 0
        if "prompt" in items:
            self.prompt = parse_parts(items["prompt"][1], ctx, f"{what}.prompt") or ()
        for name in ("again", "exhausted"):
            if name in items:
                target = r.text(items[name][1], f"{what}.{name}")
                if target is not None:
                    self.targets[name] = (target, items[name][1])

    def internal_targets(self) -> dict[str, tuple[str, Node]]:
        return self.targets

    def outcomes(self) -> tuple[str, ...]:
        return ("again", "exhausted")

    async def run(self, ctx: CallContext) -> str:
        count = ctx.retry_counts.get(self.id, 0) + 1
        ctx.retry_counts[self.id] = count
        if count > self.max:
            ctx.event("retry", {"attempt": count, "max": self.max, "exhausted": True})
            return "exhausted"
        ctx.event("retry", {"attempt": count, "max": self.max})
        if self.prompt and not ctx.hung_up:
            await ctx.play(self.prompt, barge_in=False)
        return "again"
