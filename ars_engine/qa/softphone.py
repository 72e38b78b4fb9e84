"""The QA softphone: a scriptable SIP phone the engine calls (``ars-engine softphone``).

For each incoming INVITE it acts out a :class:`SoftphoneBehaviour`: answer (after N rings) or
answer busy (486), reject (603) or never (ring until the caller CANCELs); once answered it presses
keys on cue, over RFC 4733 or in-band, may hang up itself, records what it heard to
``<recordings_dir>/<call-id>-heard.wav`` (8 kHz mono) and reports a JSON-serialisable timeline.

Key cues are the simulator's (:func:`ars_engine.telephony.simulated.parse_cue`): plain ``KEYS``
are typed after the next prompt of the caller ends (an energy detector on the received audio,
:mod:`ars_engine.media.vad`), ``@SECONDS=KEYS`` at an offset from the answer; ``after:`` cues
need prompt ids, which a phone cannot know, and are refused.

Each call is one task owned by the :class:`Softphone` (cancelled and awaited on close); its SIP
side is an :class:`~ars_engine.telephony.sip.uas.IncomingCall` run by an
:class:`~ars_engine.telephony.sip.transport.IncomingCallDriver`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ProtocolError
from ..media.audio import write_wav
from ..telephony.rtp.media import KeyMethod, MediaSession
from ..telephony.simulated import KeyCue, parse_cue
from ..telephony.sip.message import SipRequest
from ..telephony.sip.transport import IncomingCallDriver, SipEndpoint, stateless_reply
from ..telephony.sip.uas import CallCanceled, CallConfirmed, CallEnded, IncomingCall, UasConfig

__all__ = ["CallTimeline", "Mode", "Softphone", "SoftphoneBehaviour", "parse_cues"]

log = logging.getLogger("ars_engine.softphone")

Mode = Literal["answer", "busy", "reject", "never"]
REJECT_STATUS = {"busy": 486, "reject": 603}
LINGER_S = 40.0  # after the call: absorb retransmissions (Timer H/F are 64·T1 = 32 s at most)


def parse_cues(texts: list[str] | tuple[str, ...]) -> tuple[KeyCue, ...]:
    """Cues for the softphone: ``KEYS`` or ``@SECONDS=KEYS`` (ValueError for ``after:``)."""
    cues = tuple(parse_cue(t) for t in texts)
    if any(c.after_prompt for c in cues):
        raise ValueError("the softphone cannot tell prompts apart: use KEYS (after the next "
                         "prompt ends) or @SECONDS=KEYS")
    return cues


@dataclass(frozen=True, slots=True)
class SoftphoneBehaviour:
    """What the softphone does with each call."""

    mode: Mode = "answer"
    rings: int = 0  # 180 then ``rings × ring_seconds`` before the answer (0: answer at once)
    ring_seconds: float = 1.0
    keys: tuple[KeyCue, ...] = ()
    dtmf: KeyMethod = "rfc4733"
    key_ms: int = 100
    key_gap: float = 0.25
    hangup_after: float | None = None  # seconds after the answer; None: the caller hangs up
    telephone_event: bool = True  # False: answer without RFC 4733 (the caller must listen in-band)
    mask_keys: bool = False  # show keys as * in the timeline

    def __post_init__(self) -> None:
        if self.mode not in ("answer", "busy", "reject", "never"):
            raise ValueError(f"mode must be answer, busy, reject or never, not {self.mode!r}")
        if self.rings < 0 or self.ring_seconds < 0:
            raise ValueError("rings and ring_seconds cannot be negative")


@dataclass(slots=True)
class CallTimeline:
    """What happened in one call, in seconds since the INVITE arrived."""

    call_id: str
    caller: str
    t0: float
    events: list[dict[str, Any]] = field(default_factory=list)
    state: str = "offered"
    ended_by: str | None = None
    reason: str = ""
    answered_at: float | None = None
    ended_at: float | None = None
    wav: str | None = None
    heard_ms: int = 0

    def add(self, now: float, event: str, **detail: Any) -> None:
        self.events.append({"t": round(now - self.t0, 3), "event": event, **detail})

    def as_dict(self) -> dict[str, Any]:
        talk = (round(self.ended_at - self.answered_at, 3)
                if self.answered_at is not None and self.ended_at is not None else None)
        return {"call_id": self.call_id, "from": self.caller, "state": self.state,
                "ended_by": self.ended_by, "reason": self.reason, "talk_seconds": talk,
                "wav": self.wav, "heard_ms": self.heard_ms,
                "events": sorted(self.events, key=lambda e: float(e["t"]))}


def _file_safe(call_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", call_id)[:120] or "call"


class Softphone:
    """Answers calls on ``listen`` as ``behaviour`` says; finished calls' timelines (dicts) go to
    :attr:`reports`. Use ``async with Softphone(...) as phone``."""

    def __init__(self, listen: tuple[str, int], behaviour: SoftphoneBehaviour,
                 recordings_dir: Path, *, t1: float = 0.5) -> None:
        self.listen = listen
        self.behaviour = behaviour
        self.recordings_dir = recordings_dir
        self.t1 = t1
        self.endpoint: SipEndpoint | None = None
        self.reports: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._done_ids: deque[str] = deque(maxlen=256)  # late retransmissions are not new calls
        self.invites: list[str] = []  # Call-IDs of the calls received, in order (QA: no doubles)
        self.answers: asyncio.Queue[str] = asyncio.Queue()  # Call-ID of each call at its answer

    @property
    def address(self) -> tuple[str, int]:
        assert self.endpoint is not None, "the softphone is not started"
        return self.endpoint.local

    async def start(self) -> None:
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        self.endpoint = await SipEndpoint.open(*self.listen)
        self.endpoint.on_new_request = self._on_new_request

    async def close(self) -> None:
        """Stop every call in progress (its task is cancelled and awaited) and the socket."""
        tasks, self._tasks = set(self._tasks), set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.endpoint is not None:
            endpoint, self.endpoint = self.endpoint, None
            await endpoint.aclose()  # the port is free again when we return

    async def __aenter__(self) -> Softphone:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- SIP ------------------------------------------------------------------------------------
    def _on_new_request(self, request: SipRequest, source: tuple[str, int]) -> None:
        endpoint = self.endpoint
        assert endpoint is not None
        if request.method == "ACK":
            return  # an ACK for a call already gone: nothing to answer (RFC 3261 §17.2.3)
        if request.method == "OPTIONS":
            endpoint.send(stateless_reply(request, 200, "OK"), source)
            return
        if request.method != "INVITE" or (request.call_id or "") in self._done_ids:
            endpoint.send(stateless_reply(request, 481, "Call/Transaction Does Not Exist"),
                          source)
            return
        host, port = endpoint.local
        config = UasConfig(host, port, rtp_host=host, t1=self.t1,
                           telephone_event=self.behaviour.telephone_event)
        try:
            core = IncomingCall(request, source, config)
        except ProtocolError as exc:
            log.warning("dropped an INVITE too broken to answer from %s:%s: %s", *source, exc)
            return
        driver = IncomingCallDriver(endpoint, core)
        self.invites.append(core.call_id)
        now = driver.loop.time()
        timeline = CallTimeline(core.call_id, request.get("From") or "", now)
        timeline.add(now, "invite", source=f"{source[0]}:{source[1]}")
        driver.start()
        task = driver.loop.create_task(self._run_call(driver, timeline),
                                       name=f"softphone-{core.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_call(self, driver: IncomingCallDriver, timeline: CallTimeline) -> None:
        media: MediaSession | None = None
        try:
            media = await self._act(driver, timeline)
            ended = await driver.ended
            now = driver.loop.time()
            timeline.ended_at = now
            if isinstance(ended, CallCanceled):
                timeline.state, timeline.ended_by = "canceled", "remote"
                timeline.reason = "the caller canceled"
                timeline.add(now, "cancel")
            elif timeline.state in ("answered", "confirmed"):
                timeline.state, timeline.ended_by, timeline.reason = \
                    "completed", ended.by, ended.reason
                timeline.add(now, "bye_received" if ended.by == "remote" else "ended",
                             reason=ended.reason)
            else:
                timeline.ended_by, timeline.reason = ended.by, ended.reason
            if media is not None:
                await self._save_heard(media, timeline)
            self._done_ids.append(driver.core.call_id)
            self.reports.put_nowait(timeline.as_dict())
            if media is not None:
                await media.close()
                media = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LINGER_S):
                    await driver.finished()
        finally:
            if media is not None:
                await media.close()
            await driver.close()

    async def _act(self, driver: IncomingCallDriver, timeline: CallTimeline
                   ) -> MediaSession | None:
        """Ring, then answer or refuse; once answered, start the media and the key script.
        Returns the media session (None when the call was not answered)."""
        b, core, loop = self.behaviour, driver.core, driver.loop
        if b.mode in REJECT_STATUS:
            status = REJECT_STATUS[b.mode]
            driver.apply(core.reject(loop.time(), status))
            timeline.state = b.mode if b.mode == "busy" else "rejected"
            timeline.add(loop.time(), "rejected", status=status)
            return None
        if b.mode == "never" or b.rings:
            driver.apply(core.ring(loop.time()))
            timeline.add(loop.time(), "ringing")
            ring_for = None if b.mode == "never" else b.rings * b.ring_seconds
            if await self._ended_within(driver, ring_for):
                return None
        media = await MediaSession.open(self.address[0])
        try:
            driver.apply(core.answer(loop.time(), rtp_port=media.port))
            if core.negotiated is None:  # 488: nothing acceptable in the offer
                timeline.state = "failed"
                timeline.add(loop.time(), "rejected", status=488)
                await media.close()
                return None
            media.configure(core.negotiated)
            media.detect_prompt_ends()
            media.start_recording()
            media.start()
        except BaseException:
            await media.close()
            raise
        now = loop.time()
        timeline.state, timeline.answered_at = "answered", now
        self.answers.put_nowait(core.call_id)
        timeline.add(now, "answered", codec=core.negotiated.codec,
                     telephone_event=core.negotiated.dtmf_payload_type is not None)
        script = loop.create_task(self._script(driver, media, timeline, now))
        try:
            await driver.ended
        finally:
            script.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await script
        for i, at in enumerate(media.prompt_ends, 1):
            timeline.add(at, "prompt_end", n=i)
        return media

    @staticmethod
    async def _ended_within(driver: IncomingCallDriver, seconds: float | None) -> bool:
        """True if the call ended (CANCEL) within ``seconds`` (None: wait until it does)."""
        try:
            async with asyncio.timeout(seconds):
                await asyncio.shield(driver.ended)
        except TimeoutError:
            return False
        return True

    # -- the script once answered ---------------------------------------------------------------
    async def _script(self, driver: IncomingCallDriver, media: MediaSession,
                      timeline: CallTimeline, answered_at: float) -> None:
        """Keys on cue and the softphone's own hang-up, until the call ends (then cancelled)."""
        b = self.behaviour
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch_ack(driver, timeline))
            group.create_task(self._keys_after_prompts(media, timeline))
            for cue in sorted((c for c in b.keys if c.at is not None),
                              key=lambda c: c.at or 0.0):
                group.create_task(self._keys_at(media, timeline, cue, answered_at))
            if b.hangup_after is not None:
                await asyncio.sleep(max(answered_at + b.hangup_after - driver.loop.time(), 0))
                timeline.add(driver.loop.time(), "bye_sent")
                driver.apply(driver.core.hangup(driver.loop.time()))

    @staticmethod
    async def _watch_ack(driver: IncomingCallDriver, timeline: CallTimeline) -> None:
        confirmed = await asyncio.shield(driver.confirmed)
        if isinstance(confirmed, CallConfirmed):
            timeline.state = "confirmed"
            timeline.add(driver.loop.time(), "confirmed")
        elif isinstance(confirmed, CallEnded) and confirmed.by == "network":
            timeline.add(driver.loop.time(), "no_ack")

    async def _keys_after_prompts(self, media: MediaSession, timeline: CallTimeline) -> None:
        for cue in (c for c in self.behaviour.keys if c.at is None):
            await media.wait_prompt_end(len(media.prompt_ends) + 1)
            await self._type(media, timeline, cue.keys)

    async def _keys_at(self, media: MediaSession, timeline: CallTimeline, cue: KeyCue,
                       answered_at: float) -> None:
        await asyncio.sleep(max(answered_at + (cue.at or 0.0) - media.loop.time(), 0))
        await self._type(media, timeline, cue.keys)

    async def _type(self, media: MediaSession, timeline: CallTimeline, keys: str) -> None:
        b = self.behaviour
        for i, key in enumerate(keys):
            if i:
                await asyncio.sleep(b.key_gap)  # the behaviour's pacing, not a synchronisation
            start = media.loop.time()
            method = await media.send_key(key, method=b.dtmf, duration_ms=b.key_ms)
            timeline.add(start, "key", key="*" if b.mask_keys else key, method=method)

    async def _save_heard(self, media: MediaSession, timeline: CallTimeline) -> None:
        heard, _ = media.stop_recording()
        path = self.recordings_dir / f"{_file_safe(timeline.call_id)}-heard.wav"
        await asyncio.to_thread(write_wav, path, heard)
        timeline.wav, timeline.heard_ms = str(path), len(heard) // 16


class AnswerFeed:
    """The calls several phones answer, merged, from now on (their ``answers`` queues):
    ``await feed.call_ids(n)`` gives the ids of the next ``n`` calls answered, from SIP Call-IDs
    ``<call id>-<attempt>`` as the engine's embedded backend writes them. ``close()`` stops."""

    def __init__(self, phones: list[Softphone]) -> None:
        self._merged: asyncio.Queue[str] = asyncio.Queue()
        self._pumps = [asyncio.create_task(self._pump(phone)) for phone in phones]

    async def _pump(self, phone: Softphone) -> None:
        while True:
            self._merged.put_nowait(await phone.answers.get())

    async def call_ids(self, count: int) -> set[str]:
        return {(await self._merged.get()).rsplit("-", 1)[0] for _ in range(count)}

    def close(self) -> None:
        for task in self._pumps:
            task.cancel()
