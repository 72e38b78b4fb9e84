"""The shared RTP pacer: one timer per event loop sends every stream's packets on time.

All streams of a loop share one grid of absolute deadlines (``start + n · ptime / PHASES``). Each
stream belongs to one of ``PHASES`` groups and sends at its group's sub-tick, so 500 streams cost
eight wake-ups per 20 ms instead of 500, every stream keeps exact 20 ms spacing, and each burst is
an eighth of the streams (the last packet of a burst leaves sooner after its deadline). A new
stream joins the group whose sub-tick comes first among those within ``BALANCE_SLACK`` streams of
the smallest: its first packet leaves within a few milliseconds (answer → first RTP) and the
groups stay even.

The sub-ticks come from a kernel periodic timer (:mod:`.clock`, Linux timerfd) where there is
one, else from ``asyncio.sleep`` aimed half a millisecond early (the selector rounds timeouts up to
whole milliseconds). Measured at 500 streams (bench/bench_rtp_streams.py, p99 inter-arrival):
one group and sleeping 25.1 ms, eight groups and sleeping 21.2 ms; see bench/README.md for the
timerfd figures.

After a stall (a blocked loop), missed sub-ticks are caught up at once, up to ``MAX_BURST``
packets per stream; beyond that each stream skips ahead on its own schedule rather than flood the
peer (``MediaSession._send_due``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from typing import ClassVar, Protocol

from .clock import PeriodicTimer, periodic_timer

__all__ = ["MAX_BURST", "PHASES", "PacedStream", "Pacer"]

log = logging.getLogger("ars_engine.rtp")

MAX_BURST = 5  # packets sent at once after a stall before the schedule skips ahead
PHASES = 8  # sub-ticks per ptime
BALANCE_SLACK = 4  # a group may hold this many streams more than the smallest
TIMER_LEAD = 0.0005  # without timerfd: sleep this much less (epoll rounds up to whole ms)


class PacedStream(Protocol):
    def _send_due(self, now: float) -> None: ...


class Pacer:
    """The pacer of one event loop and ptime. Owned by its streams: :meth:`add` starts it, the
    last :meth:`remove` stops it (its task is cancelled and awaited, its timer closed)."""

    _instances: ClassVar[dict[tuple[int, float], Pacer]] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop, ptime: float) -> None:
        self.loop = loop
        self.ptime = ptime
        self.step = ptime / PHASES
        self.groups: list[dict[int, PacedStream]] = [{} for _ in range(PHASES)]
        self.group_of: dict[int, int] = {}
        self.next_tick = loop.time()  # deadline of the next sub-tick
        self.phase = 0  # the group sent at next_tick
        self.task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop, ptime: float) -> Pacer:
        key = (id(loop), ptime)
        pacer = cls._instances.get(key)
        if pacer is None or pacer.loop is not loop:
            pacer = cls._instances[key] = cls(loop, ptime)
        return pacer

    def add(self, stream: PacedStream) -> float:
        """Register ``stream``; return the deadline of its first packet (its group's next
        sub-tick)."""
        if self.task is None:
            self.next_tick = self.loop.time() + self.step
            self.phase = 0
            # a fresh context: the pacer serves every call, not the one whose task started it
            # (its log lines must not carry that call's id)
            self.task = self.loop.create_task(self._run(), name="rtp-pacer",
                                              context=contextvars.Context())
        smallest = min(len(g) for g in self.groups)
        group = min((g for g in range(PHASES) if len(self.groups[g]) <= smallest + BALANCE_SLACK),
                    key=lambda g: (g - self.phase) % PHASES)
        self.groups[group][id(stream)] = stream
        self.group_of[id(stream)] = group
        ahead = (group - self.phase) % PHASES
        return self.next_tick + ahead * self.step

    async def remove(self, stream: PacedStream) -> None:
        group = self.group_of.pop(id(stream), None)
        if group is not None:
            self.groups[group].pop(id(stream), None)
        if not self.group_of and self.task is not None:
            task, self.task = self.task, None
            self._instances.pop((id(self.loop), self.ptime), None)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _tick(self, now: float) -> None:
        """Send the current group's packets and move to the next sub-tick."""
        for stream in list(self.groups[self.phase].values()):
            try:
                stream._send_due(now)
            except Exception:  # one broken stream must not silence the others
                log.exception("rtp send failed")
        self.next_tick += self.step
        self.phase = (self.phase + 1) % PHASES

    def _ticks_due(self, elapsed: int) -> None:
        """``elapsed`` sub-ticks passed since the last one was sent: catch up on at most
        MAX_BURST periods' worth; skip the rest (the streams skip ahead themselves)."""
        limit = MAX_BURST * PHASES
        if elapsed > limit:
            skipped = elapsed - limit
            self.next_tick += skipped * self.step
            self.phase = (self.phase + skipped) % PHASES
            elapsed = limit
        now = self.loop.time()
        for _ in range(elapsed):
            self._tick(now)

    async def _run(self) -> None:
        timer = periodic_timer(self.next_tick, self.step)
        if timer is None:
            await self._run_sleeping()
            return
        try:
            await self._run_on_timer(timer)
        finally:
            timer.close()

    async def _run_on_timer(self, timer: PeriodicTimer) -> None:
        def readable() -> None:
            elapsed = timer.read()
            if elapsed:
                self._ticks_due(elapsed)

        self.loop.add_reader(timer.fileno(), readable)
        try:
            await self.loop.create_future()  # runs until cancelled by the last remove()
        finally:
            self.loop.remove_reader(timer.fileno())

    async def _run_sleeping(self) -> None:
        while True:
            delay = self.next_tick - self.loop.time() - TIMER_LEAD
            if delay > 0:
                await asyncio.sleep(delay)
            behind = int((self.loop.time() - self.next_tick + TIMER_LEAD) / self.step)
            self._ticks_due(1 + max(0, behind))
