"""The console's simulator: validate scenario text and run it without a phone or a network.

A run happens on a :class:`SimulatedChannel` (virtual clock: a three-minute scenario takes
milliseconds) in a worker thread with its own event loop, so rendering TTS never stalls the web
server. Mid-call requests to the core (``webhook`` steps, ``check remote``) go to
:class:`NoNetworkCore`, which answers every one with a failure, so a scenario's error branches
run and nothing leaves the machine. What comes back is masked: secret parameter values are
scrubbed from the timeline and the result (the interpreter already prints them as stars; this is
a second line of defence), and the heard audio is capped at :data:`MAX_AUDIO_SECONDS`.

Text typed in the console is untrusted: ``file:`` parts may name only files under the
scenarios folder given as ``base_dir`` (an operator must not be able to play back any ``.wav``
of the server, call recordings included).
"""

from __future__ import annotations

import asyncio
import io
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ParameterError, ScenarioInvalid
from ..media.audio import write_wav
from ..media.clip import BYTES_PER_MS
from ..scenario.corehttp import CoreAnswer
from ..scenario.interpreter import Interpreter
from ..scenario.loader import load_scenario_text
from ..scenario.parts import FilePart, Part
from ..scenario.secrets import MASK
from ..scenario.timeline import TimelineEvent
from ..telephony.simulated import KeyScript, SimulatedChannel

if TYPE_CHECKING:
    from ..media.library import MediaLibrary
    from ..scenario.model import Scenario

MAX_AUDIO_SECONDS = 600  # heard audio kept: 10 minutes of 8 kHz 16-bit mono is 9.6 MB
MIN_SCRUB_LENGTH = 4  # shorter secret values are not scrubbed from text (they would mangle it)
NO_NETWORK = "the console simulator makes no network requests"
EDITOR_PATH = "<editor>"


class SimulationError(ValueError):
    """The simulation cannot start: a parameter or a key cue is wrong (the message says which,
    never showing a secret value)."""


class ScenarioTextInvalid(ValueError):
    """Scenario text that does not load; ``problems`` lists every problem with its line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{p.line}:{p.column}: {p.message}" for p in problems))


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in scenario text, at a 1-based line and column."""

    line: int
    column: int
    message: str
    code: str = ""


@dataclass(slots=True)
class Simulation:
    """What a simulated call did and what the callee heard."""

    call_id: str
    outcome: str
    result: dict[str, Any]
    timeline: list[tuple[float, str]]
    wav: bytes
    audio_seconds: float
    audio_truncated: bool
    steps: int
    duration_seconds: float
    error: str | None = None
    core_requests: list[str] = field(default_factory=list)  # URLs that were not called


class NoNetworkCore:
    """A :class:`~ars_engine.scenario.corehttp.CoreClient` that sends nothing: every request
    fails with :data:`NO_NETWORK`; the URLs asked for are kept (bodies are not: a remote verify
    carries entered digits)."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    async def post_json(self, url: str, body: dict[str, Any], *, timeout: float) -> CoreAnswer:
        self.urls.append(url)
        return CoreAnswer(0, None, NO_NETWORK)


# -- scenario text ------------------------------------------------------------------------------

def _problems(exc: ScenarioInvalid) -> list[Problem]:
    return [Problem(e.line, e.column, e.message, e.code) for e in exc.errors]


def _load(text: str, media: MediaLibrary | None, base_dir: Path | None) -> Scenario:
    prompts = media.catalogue if media is not None else None
    try:
        scenario = load_scenario_text(text, EDITOR_PATH, prompts=prompts, base_dir=base_dir)
    except ScenarioInvalid as exc:
        raise ScenarioTextInvalid(_problems(exc)) from exc
    outside = _files_outside(scenario, base_dir)
    if outside:
        raise ScenarioTextInvalid(outside)
    return scenario


def _files_outside(scenario: Scenario, base_dir: Path | None) -> list[Problem]:
    allowed = base_dir.resolve() if base_dir is not None else None
    problems = []
    for step in scenario.steps.values():
        parts: list[Part] = [*getattr(step, "parts", ()), *getattr(step, "prompt", ())]
        for part in parts:
            if not isinstance(part, FilePart):
                continue
            inside = allowed is not None and part.path.resolve().is_relative_to(allowed)
            if not inside:
                mark = step.kind_node.start_mark
                problems.append(Problem(
                    mark.line + 1, mark.column + 1,
                    f"step '{step.id}': file '{part.path.name}' is outside the scenarios "
                    "folder; the console plays only files kept there", "file-not-allowed"))
    return problems


async def validate_text(text: str, media: MediaLibrary | None, *,
                        base_dir: Path | None = None) -> list[Problem]:
    """Every problem of scenario YAML given as text, in line order; [] when it is valid."""
    try:
        await asyncio.to_thread(_load, text, media, base_dir)
    except ScenarioTextInvalid as exc:
        return exc.problems
    return []


async def load_text(text: str, media: MediaLibrary | None, *,
                    base_dir: Path | None = None) -> Scenario:
    """The scenario in ``text`` (e.g. edited, not saved), ready to simulate; raises
    :class:`ScenarioTextInvalid` (a ValueError) listing its problems."""
    return await asyncio.to_thread(_load, text, media, base_dir)


# -- running ------------------------------------------------------------------------------------

async def simulate(scenario: Scenario, media: MediaLibrary | None, params: dict[str, str],
                   keys: list[str], *, hangup_at: float | None = None) -> Simulation:
    """Run ``scenario`` with ``params``; the callee types ``keys`` (cues as in ``ars-engine
    simulate --keys``: ``123456`` at the next gather, ``''`` silence, ``@12.5=1``,
    ``after:prompt_id=1``) and hangs up at ``hangup_at`` seconds if given.

    Raises :class:`SimulationError` for a bad parameter or key cue, or without a media library
    (``media`` None), before anything runs.
    """
    if media is None:
        raise SimulationError("the simulator needs the prompt audio library, which this "
                              "server has not loaded")
    try:
        script = KeyScript.parse([k.strip() for k in keys], hangup_at)
    except ValueError as exc:
        raise SimulationError(f"keys: {exc}") from None
    if hangup_at is not None and hangup_at < 0:
        raise SimulationError("hangup_at must be 0 seconds or more")
    try:
        scenario.bind_params(params)
    except ParameterError as exc:
        raise SimulationError(str(exc)) from None
    return await asyncio.to_thread(asyncio.run, _run(scenario, media, params, script))


async def _run(scenario: Scenario, media: MediaLibrary, params: dict[str, str],
               script: KeyScript) -> Simulation:
    call_id = "sim-" + uuid.uuid4().hex[:8]
    channel = SimulatedChannel(script, call_id=call_id)  # no recordings_dir: nothing written
    core = NoNetworkCore()
    try:
        result = await Interpreter(scenario, media, core=core).run(channel, params,
                                                                   call_id=call_id)
    except ParameterError as exc:  # bind_params was checked first; kept for safety
        raise SimulationError(str(exc)) from None
    secrets = [str(params[name]) for name in scenario.secret_params
               if name in params and len(str(params[name])) >= MIN_SCRUB_LENGTH]
    pcm = channel.heard_pcm()
    limit = MAX_AUDIO_SECONDS * 1000 * BYTES_PER_MS
    truncated = len(pcm) > limit
    pcm = pcm[:limit]
    buffer = io.BytesIO()
    write_wav(buffer, pcm)
    return Simulation(
        call_id=call_id, outcome=result.outcome,
        result={k: scrub(v, secrets) for k, v in result.result.items()},
        timeline=[(e.t_ms / 1000, scrub(event_text(e), secrets)) for e in result.timeline],
        wav=buffer.getvalue(), audio_seconds=len(pcm) / BYTES_PER_MS / 1000,
        audio_truncated=truncated, steps=result.steps,
        duration_seconds=result.duration_ms / 1000,
        error=scrub(result.error, secrets) if result.error else None,
        core_requests=[scrub(u, secrets) for u in core.urls])


def event_text(event: TimelineEvent) -> str:
    """One timeline event as text: ``ask_key: key 5``, ``welcome: ▶ 안녕하세요…``."""
    what = event.what()
    return f"{event.step}: {what}" if event.step else what


def scrub(value: Any, secrets: list[str]) -> Any:
    """``value`` with every secret in ``secrets`` replaced by stars (strings, inside lists and
    dicts too); other values unchanged."""
    if isinstance(value, str):
        for secret in sorted(secrets, key=len, reverse=True):
            value = value.replace(secret, MASK * len(secret))
            spaced = " ".join(secret)  # digits are shown spaced out when read as clips
            value = value.replace(spaced, " ".join(MASK * len(secret)))
        return value
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    return value


__all__ = ["MAX_AUDIO_SECONDS", "NoNetworkCore", "Problem", "ScenarioTextInvalid", "Simulation",
           "SimulationError", "event_text", "load_text", "scrub", "simulate", "validate_text"]
