"""``record``: start or stop recording both directions of the call."""

from __future__ import annotations

from typing import TYPE_CHECKING

from yaml.nodes import MappingNode, Node

from ...errors import MediaError
from ..parsing import ParseContext
from ..reader import is_identifier
from .base import Step, register

if TYPE_CHECKING:
    from ..context import CallContext

RECORD_KEYS = ("action", "name")
ACTIONS = ("start", "stop")


@register
class Record(Step):
    kind = "record"

    def __init__(self, step_id: str, node: Node) -> None:
        super().__init__(step_id, node)
        self.action = "start"
        self.name = "call"

    def parse(self, value: Node, ctx: ParseContext) -> None:
        r = ctx.reader
        what = f"step '{self.id}': record"
        action_node = value
        if isinstance(value, MappingNode):
            items = r.mapping(value, what) or {}
            r.check_keys(items, what, RECORD_KEYS, required=("action",), owner=self.kind_node)
            if "name" in items:
                name = r.text(items["name"][1], f"{what}.name")
                if name is not None and not is_identifier(name):
                    r.error(items["name"][1], "invalid-value",
                            f"{what}.name: '{name}' is not a valid name (a-z, 0-9, _)")
                elif name is not None:
                    self.name = name
            if "action" not in items:
                return
            action_node = items["action"][1]
        action = r.text(action_node, f"{what} action")
        if action is None:
            return
        if action not in ACTIONS:
            r.error(action_node, "invalid-value",
                    f"{what}: '{action}' is not an action; expected start or stop")
            return
        self.action = action

    def outcomes(self) -> tuple[str, ...]:
        return ("done",)

    async def run(self, ctx: CallContext) -> str:
        if self.action == "start":
            if ctx.recording is not None:
                await stop_recording(ctx)
            name = f"{ctx.call_id}-{self.name}"
            await ctx.channel.start_recording(name)
            ctx.recording = name
            ctx.event("recording_started", {"name": name})
        else:
            await stop_recording(ctx)
        return "done"


async def stop_recording(ctx: CallContext) -> None:
    """Stop the running recording, if any, and note where it went."""
    if ctx.recording is None:
        return
    name, ctx.recording = ctx.recording, None
    try:
        info = await ctx.channel.stop_recording()
    except OSError as exc:  # a full or read-only disk: the call ends as error, saying why
        ctx.event("recording_failed", {"name": name, "error": exc.strerror or str(exc)})
        raise MediaError(f"recording {name!r} could not be saved: "
                         f"{exc.strerror or exc}") from exc
    detail: dict[str, object] = {"name": name}
    if info is not None:
        detail.update(path=str(info.path), duration_ms=info.duration_ms)
        ctx.recordings.append(str(info.path))
    ctx.event("recording_stopped", detail)
