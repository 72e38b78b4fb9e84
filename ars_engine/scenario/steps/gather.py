"""``gather``: play a prompt and collect keys (count, finish key, timeouts, barge-in)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from yaml.nodes import Node

from ...telephony.channel import DTMF_KEYS, CollectEnd, CollectSpec
from ..parsing import ParseContext, VarDef
from ..parts import Part, parse_parts
from ..secrets import MASK, Secret
from .base import Step, register

if TYPE_CHECKING:
    from ..context import CallContext

GATHER_KEYS = ("prompt", "digits", "min_digits", "max_digits", "finish_key", "first_digit_timeout",
               "inter_digit_timeout", "total_timeout", "barge_in", "into", "secret")
MAX_DIGITS = 64


@register
class Gather(Step):
    kind = "gather"

    def __init__(self, step_id: str, node: Node) -> None:
        super().__init__(step_id, node)
        self.prompt: tuple[Part, ...] = ()
        self.min_digits = 1
        self.max_digits = 1
        self.finish_key: str | None = None
        self.first_digit_timeout: float | None = None
        self.inter_digit_timeout: float | None = None
        self.total_timeout: float | None = None
        self.barge_in: bool | None = None
        self.into: str | None = None
        self.secret = False
        self.spec: CollectSpec | None = None

    def parse(self, value: Node, ctx: ParseContext) -> None:
        r = ctx.reader
        what = f"step '{self.id}': gather"
        items = self.read_mapping(value, ctx, GATHER_KEYS)
        if items is None:
            return
        get = {k: v for k, (_, v) in items.items()}
        if "prompt" in get:
            self.prompt = parse_parts(get["prompt"], ctx, f"{what}.prompt") or ()
        count = None
        if "digits" in get:
            count = r.integer(get["digits"], f"{what}.digits", minimum=1, maximum=MAX_DIGITS)
            if "min_digits" in get or "max_digits" in get:
                r.error(items["digits"][0], "invalid-value",
                        f"{what}: give either digits or min_digits/max_digits, not both")
        lo = (r.integer(get["min_digits"], f"{what}.min_digits", minimum=1, maximum=MAX_DIGITS)
              if "min_digits" in get else None)
        hi = (r.integer(get["max_digits"], f"{what}.max_digits", minimum=1, maximum=MAX_DIGITS)
              if "max_digits" in get else None)
        if count is not None:
            self.min_digits = self.max_digits = count
        else:
            self.max_digits = hi if hi is not None else (lo if lo is not None else 1)
            self.min_digits = lo if lo is not None else 1
            if lo is not None and hi is not None and lo > hi:
                r.error(get["min_digits"], "invalid-value",
                        f"{what}: min_digits ({lo}) is greater than max_digits ({hi})")
            if "digits" not in get and lo is None and hi is None:
                r.error(self.kind_node, "missing-key",
                        f"{what}: say how many keys to collect with digits or max_digits")
        if "finish_key" in get:
            self.finish_key = parse_dtmf_key(get["finish_key"], ctx, f"{what}.finish_key")
        for name in ("first_digit_timeout", "inter_digit_timeout", "total_timeout"):
            if name in get:
                setattr(self, name, r.number(get[name], f"{what}.{name}", positive=True,
                                             maximum=600))
        if "barge_in" in get:
            self.barge_in = r.boolean(get["barge_in"], f"{what}.barge_in")
        if "secret" in get:
            self.secret = bool(r.boolean(get["secret"], f"{what}.secret"))
        if "into" in get:
            self.into = r.identifier(get["into"], f"{what}.into")
            if self.into is not None:
                ctx.defs.append(VarDef(self.into, get["into"], self.secret, "gather"))

    def finalize(self, first: float | None, inter: float | None, total: float | None,
                 finish_key: str | None, barge_in: bool | None) -> None:
        """Apply scenario defaults (called by the loader once defaults are known)."""
        if self.first_digit_timeout is None:
            self.first_digit_timeout = first
        if self.inter_digit_timeout is None:
            self.inter_digit_timeout = inter
        if self.total_timeout is None:
            self.total_timeout = total
        if self.finish_key is None:
            self.finish_key = finish_key
        if self.barge_in is None:
            self.barge_in = True if barge_in is None else barge_in
        if self.first_digit_timeout is not None and self.inter_digit_timeout is not None:
            self.spec = CollectSpec(self.max_digits, self.min_digits, self.finish_key,
                                    self.first_digit_timeout, self.inter_digit_timeout,
                                    self.total_timeout)

    def outcomes(self) -> tuple[str, ...]:
        return ("ok", "timeout", "incomplete")

    async def run(self, ctx: CallContext) -> str:
        assert self.spec is not None, "gather run before finalize()"
        channel = ctx.channel
        if self.prompt:
            await ctx.play(self.prompt, barge_in=bool(self.barge_in))
        if not self.barge_in:
            channel.flush_digits()
        spec = self.spec
        remaining = ctx.scenario.max_seconds - channel.now()
        if spec.total_timeout is None or spec.total_timeout > remaining:
            # The call's wall-time bound also bounds the wait for keys.
            spec = CollectSpec(spec.max_digits, spec.min_digits, spec.finish_key,
                               spec.first_digit_timeout, spec.inter_digit_timeout,
                               max(remaining, 0.001))
        got = await channel.collect(spec)
        keys = got.digits + (spec.finish_key or "") if got.end is CollectEnd.FINISH_KEY \
            else got.digits
        for key, t_ms in zip(keys, got.key_times_ms, strict=False):
            ctx.event("key", {"key": MASK if self.secret and key != spec.finish_key else key},
                      t_ms=t_ms)
        ctx.event("gather_ended", {"digits": len(got.digits), "end": got.end.value})
        value: object = Secret(got.digits) if self.secret else got.digits
        if self.into:
            ctx.variables[self.into] = value
        ctx.variables["last_input"] = value
        if not got.digits:
            return "timeout"
        if len(got.digits) < spec.min_digits:
            return "incomplete"
        return "ok"


def parse_dtmf_key(node: Node, ctx: ParseContext, what: str) -> str | None:
    key = ctx.reader.text(node, what, allow_numbers=True) if node.tag != \
        "tag:yaml.org,2002:null" else None
    if key is None:
        if node.tag == "tag:yaml.org,2002:null":
            ctx.reader.wrong_type(node, what, "a DTMF key")
        return None
    if len(key) != 1 or key not in DTMF_KEYS:
        ctx.reader.error(node, "invalid-value",
                         f"{what}: '{key}' is not a DTMF key; expected one of 0-9 * # A-D")
        return None
    return key
