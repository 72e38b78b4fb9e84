"""``webhook``: POST an event to the core mid-call and optionally keep fields of its answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from yaml.nodes import Node

from ..parsing import ParseContext, Use, VarDef
from ..templating import Template
from .base import Step, register

if TYPE_CHECKING:
    from ..context import CallContext

WEBHOOK_KEYS = ("url", "event", "data", "timeout", "save")


@register
class Webhook(Step):
    kind = "webhook"
    media = False

    def __init__(self, step_id: str, node: Node) -> None:
        super().__init__(step_id, node)
        self.url: Template | None = None
        self.event_name = "scenario_event"
        self.data: dict[str, Template] = {}
        self.timeout = 5.0
        self.save: dict[str, str] = {}  # variable <- answer field

    def parse(self, value: Node, ctx: ParseContext) -> None:
        r = ctx.reader
        what = f"step '{self.id}': webhook"
        items = self.read_mapping(value, ctx, WEBHOOK_KEYS, ("url",))
        if items is None:
            return
        if "url" in items:
            self.url = ctx.template(items["url"][1], f"{what}.url", Use.OUTPUT)
            if self.url is not None and not self.url.names and not self.url.source.startswith(
                    ("http://", "https://")):
                r.error(items["url"][1], "invalid-value",
                        f"{what}.url: '{self.url.source}' is not an http(s) URL")
        if "event" in items:
            self.event_name = r.identifier(items["event"][1], f"{what}.event") or self.event_name
        if "timeout" in items:
            self.timeout = r.number(items["timeout"][1], f"{what}.timeout", positive=True,
                                    maximum=60) or self.timeout
        if "data" in items:
            for key, (_, node) in (r.mapping(items["data"][1], f"{what}.data") or {}).items():
                template = ctx.template(node, f"{what}.data.{key}", Use.OUTPUT)
                if template is not None:
                    self.data[key] = template
        if "save" in items:
            saves = r.mapping(items["save"][1], f"{what}.save") or {}
            for var, (key_node, node) in saves.items():
                field = r.text(node, f"{what}.save.{var}")
                if r.identifier(key_node, f"{what}.save variable") and field is not None:
                    self.save[var] = field
                    ctx.defs.append(VarDef(var, key_node, False, "save"))

    def outcomes(self) -> tuple[str, ...]:
        return ("ok", "error")

    async def run(self, ctx: CallContext) -> str:
        assert self.url is not None
        url = self.url.render(ctx.variables)
        if ctx.core is None:
            ctx.event("webhook", {"event": self.event_name, "ok": False,
                                  "error": "no HTTP client configured"})
            return "error"
        body = {"event": self.event_name, "call_id": ctx.call_id,
                "scenario": ctx.scenario.name, "step": self.id,
                "data": {k: t.render(ctx.variables) for k, t in self.data.items()}}
        answer = await ctx.core.post_json(url, body, timeout=self.timeout)
        ok = answer.error is None
        detail: dict[str, object] = {"event": self.event_name, "ok": ok, "status": answer.status}
        if answer.error:
            detail["error"] = answer.error
        ctx.event("webhook", detail)
        if ok and isinstance(answer.json, dict):
            for var, field in self.save.items():
                if field in answer.json:
                    ctx.variables[var] = str(answer.json[field])
        return "ok" if ok else "error"
