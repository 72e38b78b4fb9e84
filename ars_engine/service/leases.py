"""The dispatcher's leases and recovery: every ``lease_seconds / 3`` a node renews the leases of
its calls in progress with its heartbeat in the node registry, then ends as ``failed`` /
``engine_restart`` the calls whose lease lapsed (their node died), exactly once across nodes
(``FOR UPDATE SKIP LOCKED``).

:class:`LeaseKeeping` is a part of :class:`~ars_engine.service.dispatcher.Dispatcher`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..errors import ArsError
from ..store import repo
from ..store.models import ACTIVE_STATES, Call
from .fenced import FencedWrites

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from .nodes import NodeRegistry

log = logging.getLogger("ars_engine.dispatcher")
ENGINE_RESTART = "engine_restart"


class LeaseKeeping(FencedWrites):
    registry: NodeRegistry | None
    _running: dict[str, Any]
    _stopping: bool
    _wake: asyncio.Event
    _halt: asyncio.Event

    def cancel(self, call_id: str) -> bool:
        raise NotImplementedError  # the dispatcher's: stop a dial this node is making

    async def _heartbeat_loop(self) -> None:
        """Renew leases every lease/3, then recover dead nodes' calls. After a store outage
        every node's leases may have lapsed at once: recovery waits 1.5 intervals after the
        first good heartbeat, so that the nodes still alive renew theirs first."""
        interval = self.lease.total_seconds() / 3
        loop = asyncio.get_running_loop()
        hold_until = 0.0
        outage = False
        while not self._halt.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._halt.wait()
            if self._halt.is_set():
                return
            try:
                await self._heartbeat()
                if outage:
                    outage, hold_until = False, loop.time() + 1.5 * interval
                if loop.time() >= hold_until:
                    await self.recover()
            except ArsError as exc:
                outage = True
                log.error("dispatcher heartbeat: %s", exc)
            except Exception:
                log.exception("dispatcher heartbeat")

    async def _heartbeat(self) -> None:
        ids = list(self._running)
        if not ids and self.registry is None:
            return
        now = self._now()
        wanted: list[str] = []
        async with self.services.store.session() as s, s.begin():
            if self.registry is not None:
                if not await self.registry.beat(s, now) and not self._stopping:
                    log.critical("node %s: another process took over this node id (this one "
                                 "was presumed dead): no new calls are taken here",
                                 self.node_id)
                    self._stopping = True
                    self._wake.set()
                await self.registry.release_dead(s, now)
            if ids:
                await repo.renew_leases(s, self.node_id, ids, now + self.lease)
                wanted = await _cancel_requested(s, ids)
        if ids:
            self.on_write()
        for call_id in wanted:
            self.cancel(call_id)

    async def recover(self, *, startup: bool = False) -> int:
        """Finish as ``failed`` / ``engine_restart`` every call in progress whose node is gone
        (lease expired; at startup also those leased to this node's id, which just died)."""
        store = self.services.store
        count = 0
        while True:
            now = self._now()
            async with store.session() as s, s.begin():
                calls = list(await repo.expired_calls(s, now, 100,
                                                      skip_locked=store.is_postgresql))
                if startup:
                    calls += [c for c in await _leased_to(s, self.node_id, 100)
                              if c.id not in self._running and c not in calls]
                for call in calls:
                    log.warning("call %s: its node (%s) stopped during the call; failed with "
                                "reason %s", call.id, call.lease_owner, ENGINE_RESTART)
                    self._fail(s, call, now, "error", ENGINE_RESTART)
            self._count_finished(calls)
            count += len(calls)
            if len(calls) < 100:
                break
        if count:
            self.stats.recovered += count
            self.on_write()
            self.on_event()
        return count


async def _cancel_requested(s: AsyncSession, ids: Sequence[str]) -> list[str]:
    query = select(Call.id).where(Call.id.in_(ids), Call.cancel_requested.is_(True))
    return list((await s.scalars(query)).all())


async def _leased_to(s: AsyncSession, node: str, limit: int) -> Sequence[Call]:
    query = (select(Call).where(Call.state.in_(ACTIVE_STATES), Call.lease_owner == node)
             .limit(limit).with_for_update())
    return (await s.scalars(query)).all()
