"""The node registry: which engine processes share the store, and which of them are alive.

Several nodes (``ars-engine serve`` processes, each with its own trunk or Asterisk) share one
PostgreSQL: the call queue, the webhook outbox and this ``nodes`` table. Rules:

- At start a node registers its ``node_id`` with a fresh random ``instance``. If the row says a
  process under that id is alive (not stopped, heartbeat younger than the lease), the start is
  refused: two processes under one id would take each other's calls for their own at restart.
  The exception is a row from this very host whose process is gone (kill -9, then an immediate
  restart): it is taken over at once.
- The dispatcher's heartbeat (every ``lease_seconds / 3``) beats the row along with its calls'
  leases. A beat that finds another ``instance`` in the row means this process was declared dead
  and replaced: the beat reports it and the dispatcher stops taking calls.
- A node is *dead* when its heartbeat is older than the lease and it did not stop cleanly. Its
  calls in progress are recovered through their own leases (``Dispatcher.recover``); its
  webhook leases are released here, so another node sends them without waiting for
  ``webhooks.LEASE``. Its queued calls were never its own: every node takes from one queue.
- A clean stop sets ``stopped_at``.
- Every node must hold the same master key (it unseals the calls the others queued and signs
  their webhooks): a start whose key id (``MasterKey.evidence_key_id``, public) differs from a
  live node's is refused.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from ..errors import ConfigError
from ..store.models import PENDING, Node, WebhookEvent
from .webhooks import LEASE as WEBHOOK_LEASE

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from ..store.db import Store

log = logging.getLogger("ars_engine.nodes")

ALIVE, DEAD, STOPPED = "alive", "dead", "stopped"


class NodeConflict(ConfigError):
    """Another live process runs under this node's id."""


@dataclass(frozen=True, slots=True)
class NodeView:
    """A row of the registry as operators see it (``ars-engine nodes``, /metrics)."""

    node_id: str
    site: str | None
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    status: str  # alive, dead, stopped
    heartbeat_age: float  # seconds


def node_status(node: Node, now: datetime, lease: timedelta) -> str:
    if node.stopped_at is not None:
        return STOPPED
    return ALIVE if node.heartbeat_at >= now - lease else DEAD


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, under another user
    return False


class NodeRegistry:
    """This process's row in ``nodes``: ``register()`` at start, ``beat()`` with the dispatcher's
    heartbeat, ``stopped()`` at a clean stop."""

    def __init__(self, store: Store, node_id: str, *, lease: timedelta,
                 site: str | None = None, key_id: str | None = None) -> None:
        self.store = store
        self.node_id = node_id
        self.lease = lease
        self.site = site
        self.key_id = key_id
        self.instance = secrets.token_hex(8)
        self.host = socket.gethostname()
        self.pid = os.getpid()

    async def register(self, now: datetime) -> None:
        """Claim ``node_id`` for this process; NodeConflict if a live process holds it."""
        async with self.store.session() as s, s.begin():
            await self._same_key(s, now)
            row = await s.get(Node, self.node_id, with_for_update=True)
            if row is None:
                s.add(Node(node_id=self.node_id, instance=self.instance, host=self.host,
                           pid=self.pid, site=self.site, key_id=self.key_id, started_at=now,
                           heartbeat_at=now))
                return
            if node_status(row, now, self.lease) == ALIVE and not (
                    row.host == self.host and _process_gone(row.pid)):
                age = (now - row.heartbeat_at).total_seconds()
                raise NodeConflict(
                    f"[service] node_id {self.node_id!r} is in use by a running engine on "
                    f"host {row.host!r} (pid {row.pid}, last heartbeat {age:.1f} s ago): give "
                    "each engine its own node_id, or wait "
                    f"{self.lease.total_seconds():.0f} s if that process is gone")
            if row.stopped_at is None:
                log.warning("node %s: the previous process (host %s, pid %d) did not stop "
                            "cleanly; its calls in progress are recovered now", self.node_id,
                            row.host, row.pid)
            row.instance, row.host, row.pid = self.instance, self.host, self.pid
            row.site, row.key_id = self.site, self.key_id
            row.started_at = row.heartbeat_at = now
            row.stopped_at = None
            # this id's webhook leases belonged to the previous process: free them now
            await _release_webhooks(s, [self.node_id])

    async def _same_key(self, s: AsyncSession, now: datetime) -> None:
        if self.key_id is None:
            return
        others = (await s.scalars(select(Node).where(
            Node.node_id != self.node_id, Node.key_id.is_not(None),
            Node.key_id != self.key_id))).all()
        for other in others:
            if node_status(other, now, self.lease) == ALIVE:
                raise NodeConflict(
                    f"this engine's master key (id {self.key_id}) differs from the one of the "
                    f"running node {other.node_id!r} on {other.host!r} (id {other.key_id}): "
                    "every node on one database needs the same key ([service] "
                    "secret_key_file or ARS_SECRET_KEY), or it can neither read the calls the "
                    "others queued nor sign their webhooks")

    async def beat(self, s: AsyncSession, now: datetime) -> bool:
        """Record a heartbeat (inside the caller's transaction); False when the row was taken
        over by another process (this one was presumed dead)."""
        result = await s.execute(update(Node).where(
            Node.node_id == self.node_id, Node.instance == self.instance).values(
                heartbeat_at=now))
        return bool(getattr(result, "rowcount", 0))

    async def release_dead(self, s: AsyncSession, now: datetime) -> list[str]:
        """Free the webhook leases of nodes that died or stopped lately (older leases have
        expired by themselves); their ids."""
        lately = now - self.lease - WEBHOOK_LEASE
        rows = (await s.scalars(select(Node).where(Node.node_id != self.node_id,
                                                   Node.heartbeat_at >= lately))).all()
        gone = [n.node_id for n in rows if node_status(n, now, self.lease) != ALIVE]
        if gone:
            await _release_webhooks(s, gone)
        return gone

    async def stopped(self, now: datetime) -> None:
        async with self.store.session() as s, s.begin():
            await s.execute(update(Node).where(
                Node.node_id == self.node_id, Node.instance == self.instance).values(
                    stopped_at=now, heartbeat_at=now))


async def _release_webhooks(s: AsyncSession, nodes: list[str]) -> None:
    await s.execute(update(WebhookEvent).where(
        WebhookEvent.status == PENDING, WebhookEvent.lease_owner.in_(nodes)).values(
            lease_owner=None, lease_expires_at=None))


async def list_nodes(s: AsyncSession, now: datetime, lease: timedelta) -> list[NodeView]:
    """Every registered node with its status, alive first."""
    rows = (await s.scalars(select(Node).order_by(Node.node_id))).all()
    views = [NodeView(n.node_id, n.site, n.host, n.pid, n.started_at, n.heartbeat_at,
                      n.stopped_at, node_status(n, now, lease),
                      (now - n.heartbeat_at).total_seconds()) for n in rows]
    order = {ALIVE: 0, DEAD: 1, STOPPED: 2}
    return sorted(views, key=lambda v: (order[v.status], v.node_id))
