"""Run a scenario on a :class:`~ars_engine.telephony.channel.Channel`.

A plain asyncio loop over the step graph: run a step, take its outcome, follow the transition.
It imports nothing about SIP or Asterisk. Two hard bounds keep every call finite whatever the
scenario says: ``limits.max_steps`` and ``limits.max_seconds`` (channel time, which is virtual in
simulation; a real-time ``asyncio.timeout`` backs it up). No exception escapes :meth:`run` once the
call is under way: a failure becomes outcome ``error`` and the call record is kept.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import ArsError, CalleeHangup, ChannelError, MediaError
from ..media.clip import PromptAudio
from .context import CallContext
from .parts import Part, is_static
from .steps.finish import Hangup
from .steps.gather import Gather
from .steps.play import Play
from .steps.record import stop_recording
from .steps.retry import Retry
from .timeline import CallResult

if TYPE_CHECKING:
    from ..media.library import MediaLibrary
    from ..telephony.channel import Channel
    from .corehttp import CoreClient
    from .model import Scenario

log = logging.getLogger("ars_engine.interpreter")

CALLEE_HANGUP = "callee_hangup"
LIMIT_EXCEEDED = "limit_exceeded"
ERROR = "error"
REAL_TIME_GRACE = 10.0  # seconds beyond max_seconds before the real-time guard fires


class Interpreter:
    """Runs one scenario; reusable across calls (it keeps pre-rendered static prompts)."""

    def __init__(self, scenario: Scenario, media: MediaLibrary, *,
                 core: CoreClient | None = None) -> None:
        self.scenario = scenario
        self.media = media
        self.core = core
        self._static: dict[int, PromptAudio] = {}
        self._static_parts = [p for p in _all_parts(scenario) if is_static(p)]

    def prerender(self) -> None:
        """Render every prompt that uses no variable (so the first call does not wait on TTS)."""
        from .context import render_parts

        for parts in self._static_parts:
            if id(parts) not in self._static:
                self._static[id(parts)] = render_parts(parts, self.media, {})

    async def run(self, channel: Channel, params: Mapping[str, object], *,
                  call_id: str | None = None) -> CallResult:
        """Run the scenario on an answered channel and return its result.

        Raises :class:`~ars_engine.errors.ParameterError` (before touching the channel) when the
        parameters do not match the declaration; afterwards never raises.
        """
        scenario = self.scenario
        variables = scenario.bind_params(params)
        call_id = call_id or getattr(channel, "call_id", None) or uuid.uuid4().hex[:16]
        variables.update(call_id=call_id, scenario=scenario.name, last_outcome="",
                         last_input="")
        ctx = CallContext(scenario, channel, self.media, self.core, variables, call_id,
                          self._static)
        count = 0
        error: str | None = None
        try:
            if len(self._static) < len(self._static_parts):
                self.prerender()
            async with asyncio.timeout(scenario.max_seconds + REAL_TIME_GRACE):
                count = await self._loop(ctx)
        except TimeoutError:
            ctx.event("limit", {"limit": "max_seconds", "clock": "real"})
            ctx.finish(LIMIT_EXCEEDED, {"limit": "max_seconds"})
        except (MediaError, ChannelError, ArsError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error("call %s: step '%s' failed: %s", call_id, ctx.step, error)
            ctx.finish(ERROR, {"error": type(exc).__name__})
        except Exception as exc:  # the engine must survive any step bug
            error = f"{type(exc).__name__}: {exc}"
            log.exception("call %s: step '%s' crashed", call_id, ctx.step)
            ctx.finish(ERROR, {"error": type(exc).__name__})
        finally:
            await self._cleanup(ctx)
        return CallResult(call_id=call_id, scenario=scenario.name,
                          outcome=ctx.outcome or ERROR, result=ctx.result,
                          timeline=ctx.timeline, steps=count, duration_ms=ctx.now_ms(),
                          recordings=ctx.recordings, error=error)

    async def _loop(self, ctx: CallContext) -> int:
        scenario = self.scenario
        steps = scenario.steps
        channel = ctx.channel
        step = steps[scenario.start]
        handled_hangup = False
        count = 0
        while True:
            count += 1
            if count > scenario.max_steps:
                ctx.event("limit", {"limit": "max_steps"})
                ctx.finish(LIMIT_EXCEEDED, {"limit": "max_steps"})
                return count - 1
            if channel.now() >= scenario.max_seconds:
                ctx.event("limit", {"limit": "max_seconds"})
                ctx.finish(LIMIT_EXCEEDED, {"limit": "max_seconds"})
                return count - 1
            ctx.step = step.id
            try:
                if ctx.hung_up and step.media and not isinstance(step, Retry):
                    raise CalleeHangup("the line is down")
                outcome = await step.run(ctx)
            except CalleeHangup:
                if not ctx.hung_up:
                    ctx.hung_up = True
                    ctx.event("hangup", {"by": "callee"})
                if scenario.on_hangup and not handled_hangup:
                    handled_hangup = True
                    step = steps[scenario.on_hangup]
                    continue
                ctx.finish(CALLEE_HANGUP)
                return count
            if ctx.finished:
                return count
            ctx.variables["last_outcome"] = outcome
            step = steps[step.transitions[outcome]]

    async def _cleanup(self, ctx: CallContext) -> None:
        """Stop a running recording and hang up; failures here are logged, never raised."""
        try:
            if ctx.recording is not None:
                await stop_recording(ctx)
            if ctx.channel.is_up:
                await ctx.channel.hangup()
                ctx.event("hangup", {"by": "engine"})
        except Exception as exc:
            log.warning("call %s: cleanup failed: %s", ctx.call_id, type(exc).__name__)
        log.info("call %s scenario %s outcome %s", ctx.call_id, self.scenario.name, ctx.outcome)


def _all_parts(scenario: Scenario) -> list[tuple[Part, ...]]:
    found: list[tuple[Part, ...]] = []
    for step in scenario.steps.values():
        if isinstance(step, Play):
            found.append(step.parts)
        elif isinstance(step, Gather | Retry) and step.prompt:
            found.append(step.prompt)
    return [p for p in found if p]


__all__ = ["CALLEE_HANGUP", "ERROR", "LIMIT_EXCEEDED", "CallResult", "Hangup", "Interpreter"]
