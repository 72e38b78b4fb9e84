"""The state of one running call, as steps see it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..media.clip import Clip, PromptAudio
from ..telephony.channel import Channel, PlayResult
from .parts import AmountPart, DigitsPart, FilePart, Part, PromptPart, TextPart
from .secrets import Secret
from .timeline import TimelineEvent

if TYPE_CHECKING:
    from ..media.library import MediaLibrary
    from .corehttp import CoreClient
    from .model import Scenario

log = logging.getLogger("ars_engine.call")


class CallContext:
    """Variables, timeline and services of one call. Created by the interpreter per run."""

    __slots__ = (
        "_now",
        "call_id",
        "channel",
        "core",
        "finished",
        "hung_up",
        "media",
        "outcome",
        "recording",
        "recordings",
        "result",
        "retry_counts",
        "scenario",
        "static_prompts",
        "step",
        "timeline",
        "variables",
    )

    def __init__(self, scenario: Scenario, channel: Channel, media: MediaLibrary,
                 core: CoreClient | None, variables: dict[str, object], call_id: str,
                 static_prompts: dict[int, PromptAudio]) -> None:
        self.scenario = scenario
        self.channel = channel
        self.media = media
        self.core = core
        self.variables = variables
        self.call_id = call_id
        self.timeline: list[TimelineEvent] = []
        self.retry_counts: dict[str, int] = {}
        self.result: dict[str, Any] = {}
        self.outcome: str | None = None
        self.finished = False
        self.hung_up = False
        self.recording: str | None = None
        self.recordings: list[str] = []
        self.step = ""
        self.static_prompts = static_prompts
        self._now: Callable[[], float] = channel.now

    # -- timeline -----------------------------------------------------------------------------
    def now_ms(self) -> int:
        return int(self._now() * 1000)

    def event(self, kind: str, detail: dict[str, Any] | None = None, *,
              t_ms: int | None = None) -> None:
        self.timeline.append(TimelineEvent(self.now_ms() if t_ms is None else t_ms, kind,
                                           self.step, detail if detail is not None else {}))

    def finish(self, outcome: str, result: dict[str, Any] | None = None) -> None:
        self.outcome = outcome
        if result:
            self.result.update(result)
        self.finished = True

    # -- media --------------------------------------------------------------------------------
    def render(self, parts: tuple[Part, ...]) -> PromptAudio:
        """The audio and display text of ``parts`` (static ones rendered once per scenario)."""
        cached = self.static_prompts.get(id(parts))
        if cached is not None:
            return cached
        return render_parts(parts, self.media, self.variables)

    async def play(self, parts: tuple[Part, ...], *, barge_in: bool) -> PlayResult:
        prompt = self.render(parts)
        detail: dict[str, Any] = {"text": prompt.text, "duration_ms": prompt.duration_ms}
        if prompt.prompt_ids:
            detail["prompts"] = list(prompt.prompt_ids)
        self.event("prompt_started", detail)
        result = await self.channel.play(prompt, barge_in=barge_in)
        self.event("prompt_ended", {"played_ms": result.played_ms,
                                    "interrupted": result.interrupted})
        return result


def render_parts(parts: tuple[Part, ...], media: MediaLibrary,
                 variables: dict[str, object]) -> PromptAudio:
    """Audio clips and masked display text for a list of parts."""
    clips: list[Clip] = []
    texts: list[str] = []
    ids: list[str] = []
    for part in parts:
        if isinstance(part, PromptPart):
            clips.append(media.prompt(part.prompt_id))
            texts.append(media.catalogue.text(part.prompt_id))
            ids.append(part.prompt_id)
        elif isinstance(part, TextPart):
            # The validator refused secrets here; render() masks any that slipped through.
            text = part.template.render(variables)
            clips.append(media.tts(text))
            texts.append(text)
        elif isinstance(part, DigitsPart):
            value = part.template.render_value(variables)
            digits = value.reveal() if isinstance(value, Secret) else str(value)
            clips.extend(media.digits(digits))
            texts.append(str(value) if isinstance(value, Secret) else " ".join(digits))
        elif isinstance(part, AmountPart):
            raw = str(part.template.render_value(variables)).replace(",", "")
            won = int(raw) if raw.isdigit() else 0
            clips.extend(media.amount(won))
            texts.append(f"{won:,}원")
        elif isinstance(part, FilePart):
            clips.append(media.file(part.path))
            texts.append(f"[{part.path.name}]")
        else:
            clips.append(media.silence(part.ms))
    return PromptAudio(" ".join(t for t in texts if t), tuple(clips), tuple(ids))


__all__ = ["CallContext", "render_parts"]
