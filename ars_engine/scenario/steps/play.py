"""``play``: say one or more parts; ``barge_in: true`` lets a key cut it short."""

from __future__ import annotations

from typing import TYPE_CHECKING

from yaml.nodes import Node

from ..parsing import ParseContext
from ..parts import Part, parse_parts
from .base import Step, register

if TYPE_CHECKING:
    from ..context import CallContext


@register
class Play(Step):
    kind = "play"
    parts: tuple[Part, ...] = ()
    barge_in = False

    def parse(self, value: Node, ctx: ParseContext) -> None:
        self.parts = parse_parts(value, ctx, f"step '{self.id}': play") or ()

    def outcomes(self) -> tuple[str, ...]:
        return ("done",)

    async def run(self, ctx: CallContext) -> str:
        await ctx.play(self.parts, barge_in=self.barge_in)
        return "done"
