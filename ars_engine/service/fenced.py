"""The dispatcher's writes after the dial, fenced: each applies only if the call is still this
node's (lease owner) and in progress, so a node taken for dead, or a repeat of a write whose
commit was lost, never changes a call another node has ended. While the store is unreachable (a
PostgreSQL restart or failover) the writes are tried again with backoff, within a budget.

:class:`FencedWrites` is a part of :class:`~ars_engine.service.dispatcher.Dispatcher`; it reads
the attributes declared below, which the dispatcher sets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..errors import ArsError, StoreError
from ..store import repo
from ..store.models import ACTIVE_STATES, ANSWERED, DIALING, FAILED, QUEUED, RINGING, Call
from .payloads import call_summary

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from .metrics import EngineMetrics
    from .runtime import Services

log = logging.getLogger("ars_engine.dispatcher")
# A store write after the dial is tried again while the store is unreachable: the first retry
# after STORE_RETRY_FIRST s, doubling up to STORE_RETRY_MAX; the answered mark for this long (the
# callee hears silence meanwhile), the end of a call for two leases, at least
# FINISH_WRITE_BUDGET s.
STORE_RETRY_FIRST = 0.2
STORE_RETRY_MAX = 2.0
ANSWER_WRITE_BUDGET = 5.0
FINISH_WRITE_BUDGET = 10.0


@dataclass(slots=True)
class DispatcherStats:
    claimed: int = 0
    dialed: int = 0
    recovered: int = 0
    retried: int = 0
    finished: dict[str, int] = field(default_factory=dict)


class FencedWrites:
    services: Services
    node_id: str
    lease: timedelta
    metrics: EngineMetrics | None
    stats: DispatcherStats
    on_write: Callable[[], None]
    on_event: Callable[[], None]

    def _now(self) -> datetime:
        return self.services.clock()

    async def _update(self, call_id: str, expected: str | None, to_state: str, *,
                      reason: str | None = None, answered: bool = False,
                      retry_in: float | None = None, outcome: str | None = None,
                      sip_status: int | None = None) -> bool:
        """Move our call to ``to_state`` if it is still ours (and in ``expected`` when given).
        While the store is unreachable the write is tried again for ``ANSWER_WRITE_BUDGET``
        seconds (not for ``ringing``, which is only informative)."""
        budget = 0.0 if to_state == RINGING else ANSWER_WRITE_BUDGET
        return await self._retrying(call_id, budget, lambda: self._update_once(
            call_id, expected, to_state, reason=reason, answered=answered, retry_in=retry_in,
            outcome=outcome, sip_status=sip_status))

    async def _update_once(self, call_id: str, expected: str | None, to_state: str, *,
                           reason: str | None, answered: bool, retry_in: float | None,
                           outcome: str | None, sip_status: int | None) -> bool:
        now = self._now()
        async with self.services.store.session() as s, s.begin():
            call = await repo.get_call(s, None, call_id, lock=True)
            if call is not None and call.state == to_state == ANSWERED and \
                    call.lease_owner == self.node_id:
                return True  # a repeat of a write whose commit went through
            if not self._ours(call, expected):
                return False
            assert call is not None
            if to_state == RINGING and call.state != DIALING:
                return False
            repo.transition(s, call, to_state, now, reason=reason, node=self.node_id)
            if sip_status is not None:
                call.sip_status = sip_status
            if answered:
                call.answered_at = now
            if to_state == QUEUED:
                call.lease_owner = call.lease_expires_at = None
                call.not_before = now + timedelta(seconds=retry_in or 0)
                call.outcome = outcome
                repo.add_event(s, call, "call.retrying", call_summary(call), now)
        self.on_write()
        if to_state == QUEUED:
            self.on_event()
        return True

    async def _retrying(self, call_id: str, budget: float,
                        write: Callable[[], Awaitable[bool]]) -> bool:
        """``write()``, tried again with backoff while the store raises StoreError, for up to
        ``budget`` seconds; then that error. A write whose commit was lost mid-way is safe to
        repeat: it is fenced (the call must still be ours and active)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        delay = STORE_RETRY_FIRST
        while True:
            try:
                return await write()
            except StoreError as exc:
                if loop.time() + delay > deadline:
                    raise
                log.warning("call %s: the store is unreachable (%s); trying again in %.1f s",
                            call_id, exc, delay)
            await asyncio.sleep(delay)  # backoff between attempts, nothing to wait for
            delay = min(delay * 2, STORE_RETRY_MAX)

    def _ours(self, call: Call | None, expected: str | None) -> bool:
        if call is None or call.lease_owner != self.node_id or call.state not in ACTIVE_STATES:
            log.warning("call %s: no longer held by this node; result dropped",
                        call.id if call else "?")
            return False
        return expected is None or call.state == expected

    async def _finish_safely(self, call_id: str, state: str, outcome: str, reason: str | None,
                             **fields: Any) -> None:
        """Record the end of our call. While the store is unreachable (a PostgreSQL restart or
        failover) the write is tried again for up to two leases (at least
        ``FINISH_WRITE_BUDGET`` s), the call still counted as running so that the heartbeat
        keeps its lease; then recovery reports it as ``engine_restart``."""

        async def write() -> bool:
            async with self.services.store.session() as s, s.begin():
                call = await repo.get_call(s, None, call_id, lock=True)
                if call is None or not self._ours(call, None):
                    return False
                self._fail(s, call, self._now(), outcome, reason, state=state, **fields)
                return True

        try:
            if not await self._retrying(call_id, max(2 * self.lease.total_seconds(),
                                                     FINISH_WRITE_BUDGET), write):
                return
        except ArsError as exc:  # the lease lapses and recovery reports the call
            log.error("call %s: cannot record the end of the call: %s", call_id, exc)
            return
        self.stats.finished[outcome] = self.stats.finished.get(outcome, 0) + 1
        if self.metrics is not None:
            self.metrics.call_finished(state, outcome)
        self.on_write()
        self.on_event()

    def _fail(self, s: AsyncSession, call: Call, now: datetime, outcome: str,
              reason: str | None, *, state: str = FAILED, **fields: Any) -> None:
        """End ``call`` in ``state`` (failed, finished, canceled) with its webhook event."""
        repo.transition(s, call, state, now, reason=reason or outcome, node=self.node_id)
        call.outcome, call.reason, call.ended_at = outcome, reason, now
        call.sealed_params = None  # the secrets' life ends with the call
        call.lease_owner = call.lease_expires_at = None
        for name, value in fields.items():
            if value is not None:
                setattr(call, name, value)
        repo.add_event(s, call, f"call.{state}", call_summary(call), now)

    def _count_finished(self, calls: Sequence[Call]) -> None:
        """Count committed terminal writes (``_fail`` outside ``_finish_safely``)."""
        if self.metrics is not None:
            for call in calls:
                self.metrics.call_finished(call.state, call.outcome)
