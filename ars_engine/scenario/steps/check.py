"""``check``: compare input with a value (constant time), a salted hash, a pattern, or the core."""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from yaml.nodes import Node

from ..parsing import ParseContext, Use
from ..secrets import constant_time_equals, reveal, verify_hash
from ..templating import Template
from .base import Step, register

if TYPE_CHECKING:
    from ..context import CallContext

CHECK_KEYS = ("input", "equals", "hash", "pattern", "remote")
REMOTE_KEYS = ("url", "timeout")
MODES = ("equals", "hash", "pattern", "remote")


@register
class Check(Step):
    kind = "check"
    media = False

    def __init__(self, step_id: str, node: Node) -> None:
        super().__init__(step_id, node)
        self.input: str | None = None
        self.mode = "equals"
        self.against: str | None = None  # variable name for equals/hash
        self.pattern: re.Pattern[str] | None = None
        self.url: Template | None = None
        self.timeout = 5.0

    def parse(self, value: Node, ctx: ParseContext) -> None:
        r = ctx.reader
        what = f"step '{self.id}': check"
        items = self.read_mapping(value, ctx, CHECK_KEYS, ("input",))
        if items is None:
            return
        modes = [m for m in MODES if m in items]
        if len(modes) != 1:
            r.error(self.kind_node, "missing-key" if not modes else "invalid-value",
                    f"{what}: give exactly one of {', '.join(MODES)}"
                    + (f" (got {', '.join(modes)})" if modes else ""))
            return
        self.mode = mode = modes[0]
        node = items[mode][1]
        if "input" in items:
            self.input = ctx.variable(items["input"][1], f"{what}.input", Use.CHECK_INPUT)
        if mode == "equals":
            self.against = ctx.variable(node, f"{what}.equals", Use.CHECK_EQUALS)
        elif mode == "hash":
            self.against = ctx.variable(node, f"{what}.hash", Use.CHECK_HASH)
        elif mode == "pattern":
            self.pattern = r.pattern(node, f"{what}.pattern")
        else:
            self._parse_remote(node, ctx, f"{what}.remote")

    def _parse_remote(self, node: Node, ctx: ParseContext, what: str) -> None:
        r = ctx.reader
        items = r.mapping(node, what)
        if items is None:
            return
        r.check_keys(items, what, REMOTE_KEYS, required=("url",), owner=node)
        if "url" in items:
            self.url = ctx.template(items["url"][1], f"{what}.url", Use.OUTPUT)
            if self.url is not None and not self.url.names:
                problem = remote_url_problem(self.url.source)
                if problem:
                    r.error(items["url"][1], "invalid-value", f"{what}.url: {problem}")
        if "timeout" in items:
            self.timeout = r.number(items["timeout"][1], f"{what}.timeout", positive=True,
                                    maximum=60) or self.timeout

    def outcomes(self) -> tuple[str, ...]:
        return ("pass", "fail", "error") if self.mode == "remote" else ("pass", "fail")

    async def run(self, ctx: CallContext) -> str:
        value = ctx.variables.get(self.input or "", "")
        if self.mode == "equals":
            ok = constant_time_equals(value, ctx.variables.get(self.against or "", ""))
        elif self.mode == "hash":
            ok = verify_hash(value, ctx.variables.get(self.against or "", ""))
        elif self.mode == "pattern":
            assert self.pattern is not None
            ok = self.pattern.fullmatch(reveal(value)) is not None
        else:
            return await self._remote(ctx, value)
        ctx.event("check", {"mode": self.mode, "passed": ok})
        return "pass" if ok else "fail"

    async def _remote(self, ctx: CallContext, value: object) -> str:
        assert self.url is not None
        url = self.url.render(ctx.variables)
        problem = remote_url_problem(url)
        if problem or ctx.core is None:
            ctx.event("check", {"mode": "remote", "passed": False,
                                "error": problem or "no HTTP client configured"})
            return "error"
        body = {"call_id": ctx.call_id, "scenario": ctx.scenario.name, "step": self.id,
                "input": reveal(value)}
        answer = await ctx.core.post_json(url, body, timeout=self.timeout)
        verdict = answer.json.get("result") if isinstance(answer.json, dict) else None
        if answer.error or verdict not in ("pass", "fail"):
            ctx.event("check", {"mode": "remote", "passed": False, "status": answer.status,
                                "error": answer.error or "answer has no result pass/fail"})
            return "error"
        ctx.event("check", {"mode": "remote", "passed": verdict == "pass",
                            "status": answer.status})
        return str(verdict)


def remote_url_problem(url: str) -> str | None:
    """Entered digits may only travel over https, or to a loopback address (tests, sidecars)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        if host == "localhost":
            return None
        try:
            if ipaddress.ip_address(host).is_loopback:
                return None
        except ValueError:
            pass
        return "a remote verify URL must be https:// (or http:// to a loopback address)"
    return f"'{url}' is not an http(s) URL"
