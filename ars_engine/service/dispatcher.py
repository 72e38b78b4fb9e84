"""The dispatcher: takes due calls from the store and places them, within limits, exactly once.

Rules (the store holds the truth; this object can be killed at any line):

- A node takes a queued call by moving it to ``dialing`` with a lease (owner, expiry) in one
  transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), and only then dials. A call that left
  ``queued`` is never put back there except by its own retry policy, from a node that holds the
  lease and saw the attempt fail; so no crash can make a number ring twice.
- A running node renews its leases every ``lease_seconds / 3``. A call in progress whose lease
  expired belonged to a dead node: it is finished as ``failed`` with reason ``engine_restart``
  (by any node, or by the same node when it restarts under the same ``node_id``) and its webhook
  goes out, once.
- Every write after the dial is fenced: it applies only if the call is still ours (lease owner)
  and in the state we left it in (service/fenced.py); leases and recovery are in
  service/leases.py.
- Limits: this node runs at most ``max_calls`` at once and starts at most ``calls_per_second``
  (its trunk); a tenant has at most ``max_concurrent`` calls in progress across all nodes (the
  tenant row is locked while counting); one number is never dialed by two calls at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ArsError
from ..store import repo
from ..store.models import (
    ANSWERED,
    CANCELED,
    DIALING,
    FAILED,
    FINISHED,
    QUEUED,
    RINGING,
    Call,
)
from .backoff import RetryPolicy
from .fenced import DispatcherStats
from .leases import ENGINE_RESTART, LeaseKeeping
from .limits import TokenBucket
from .logs import log_context
from .masking import DEFAULT_REGISTRY as SECRETS
from .masking import SecretToken
from .policy import DestinationRules, check_destination
from .seal import SealError, unseal
from .tasks import cancel_and_wait, finish_round

if TYPE_CHECKING:
    from ..scenario.timeline import CallResult
    from ..telephony.outcomes import CallAttempt
    from .metrics import EngineMetrics
    from .nodes import NodeRegistry
    from .runtime import Services

__all__ = ["ENGINE_RESTART", "Dialer", "Dispatcher", "DispatcherStats", "default_node_id"]

log = logging.getLogger("ars_engine.dispatcher")
CLAIM_FACTOR = 4  # rows looked at per free slot (some are skipped by tenant/number limits)
SHUTDOWN_DRAIN_SECONDS = 30.0
STOP_GRACE = 15.0  # seconds a loop gets to finish its round before it is cancelled


class Dialer(Protocol):
    """A telephony backend as the dispatcher uses it (EmbeddedBackend, AsteriskBackend)."""

    async def dial(self, target: str, *, call_id: str | None = None,
                   on_progress: Callable[[int], None] | None = None) -> CallAttempt: ...


def default_node_id() -> str:
    """Stable across restarts of one engine on one host (its dead calls are then recovered at
    once on restart, not after the lease expires). Give each node its own in ``[service]``."""
    return socket.gethostname()


@dataclass(slots=True)
class _Running:
    call_id: str
    task: asyncio.Task[None] | None = None
    dial: asyncio.Task[Any] | None = None
    canceled: bool = False
    ringing: asyncio.Task[bool] | None = None
    channel: Any = None  # the answered call's Channel until it is closed (RTP metrics)


class Dispatcher(LeaseKeeping):
    """Places the store's due calls on ``backend``. ``start()`` / ``stop()``; ``wake()`` when a
    call was created; ``cancel(call_id)`` to stop a dial this node is making."""

    def __init__(self, services: Services, backend: Dialer, *, node_id: str | None = None,
                 target: str | None = None, numbers: dict[str, str] | None = None,
                 on_event: Callable[[], None] = lambda: None,
                 registry: NodeRegistry | None = None) -> None:
        config = services.settings.service
        self.services = services
        self.backend = backend
        self.node_id = node_id or config.node_id or default_node_id()
        self.lease = timedelta(seconds=config.lease_seconds)
        self.max_calls = config.max_calls
        self.poll_seconds = config.poll_seconds
        self.bucket = TokenBucket(config.calls_per_second, max(1.0, config.calls_per_second))
        self.target = target or config.target or "sip:{national}@127.0.0.1"
        self.numbers = dict(numbers if numbers is not None else config.numbers)
        self.on_event = on_event
        # this process's row in the node registry (serve); None: no registry (unit tests)
        self.registry = registry
        # called after each of this node's committed writes to its calls (state, lease): an
        # observer (a test, the console) re-reads the store then instead of polling it
        self.on_write: Callable[[], None] = lambda: None
        # /metrics: setup times and terminal writes (EngineMetrics.attach sets it)
        self.metrics: EngineMetrics | None = None
        self.stats = DispatcherStats()
        self._running: dict[str, _Running] = {}
        self._secrets: dict[str, list[SecretToken]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._halt = asyncio.Event()  # ends the heartbeat, after the drain
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._idle.set()

    # -- life cycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.registry is not None:
            await self.registry.register(self._now())  # NodeConflict: another live process
        await self.recover(startup=True)
        self._tasks = [asyncio.create_task(self._claim_loop(), name="dispatcher"),
                       asyncio.create_task(self._heartbeat_loop(), name="dispatcher-heartbeat")]

    async def stop(self, drain: float = SHUTDOWN_DRAIN_SECONDS) -> None:
        """Stop taking calls, let running ones end (up to ``drain`` seconds), then cancel the
        rest: their leases lapse and they are recovered as ``engine_restart``."""
        self._stopping = True
        self._wake.set()
        if not self._tasks:
            return  # never started
        claim, heartbeat = self._tasks  # the heartbeat keeps our leases alive while we drain
        await finish_round(claim, STOP_GRACE)
        running = [r.task for r in self._running.values() if r.task is not None]
        if running:
            _done, pending = await asyncio.wait(running, timeout=drain)
            for task in pending:
                await cancel_and_wait(task)
        self._halt.set()
        await finish_round(heartbeat, STOP_GRACE)
        self._tasks = []
        if self.registry is not None:
            try:
                await self.registry.stopped(self._now())
            except ArsError as exc:  # the row then reads dead after the lease: same outcome
                log.error("node %s: cannot record the stop: %s", self.node_id, exc)

    def wake(self) -> None:
        self._wake.set()

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def draining(self) -> bool:
        """True once ``stop()`` began: no new call is taken (``/readyz`` reports not ready)."""
        return self._stopping

    def live_channels(self) -> list[Any]:
        """The channels of this node's answered calls that are still open."""
        return [r.channel for r in self._running.values() if r.channel is not None]

    async def idle(self) -> None:
        """Wait until this node runs no call (tests, drain)."""
        await self._idle.wait()

    def cancel(self, call_id: str) -> bool:
        """Stop the dial of ``call_id`` if this node is making it (the CANCEL goes out at once);
        True when it was ours."""
        running = self._running.get(call_id)
        if running is None or running.dial is None or running.dial.done():
            return False
        running.canceled = True
        running.dial.cancel()
        return True

    # -- taking calls ------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            wait = self.poll_seconds
            free = self.max_calls - len(self._running)
            tokens = self.bucket.available(time.monotonic())
            if free > 0 and tokens > 0:
                try:
                    calls = await self._claim(min(free, tokens))
                except ArsError as exc:
                    log.error("dispatcher: cannot take calls: %s", exc)
                    calls = []
                except Exception:  # never let the loop die: this node would stop silently
                    log.exception("dispatcher: cannot take calls")
                    calls = []
                if calls:
                    self.bucket.take(len(calls), time.monotonic())
                    for call in calls:
                        self._start(call)
                    if len(calls) == min(free, tokens):
                        wait = 0.0  # there may be more due right now
            elif free > 0:
                wait = min(wait, self.bucket.wait(time.monotonic()))
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
            else:
                await asyncio.sleep(0)

    async def _claim(self, slots: int) -> list[Call]:
        store = self.services.store
        now = self._now()
        chosen: list[Call] = []
        refused: list[Call] = []
        async with store.session() as s, s.begin():
            rows = await repo.due_calls(s, now, slots * CLAIM_FACTOR,
                                        skip_locked=store.is_postgresql)
            if not rows:
                return []
            tenants = await repo.lock_tenants(s, [r.tenant_id for r in rows])
            active = await repo.active_counts(s, list(tenants))
            busy = await repo.active_destinations(s, list({r.destination for r in rows}))
            for call in rows:
                if len(chosen) >= slots:
                    break
                tenant = tenants.get(call.tenant_id)
                if tenant is None or tenant.disabled:
                    self._fail(s, call, now, "failed", "tenant_disabled")
                    refused.append(call)
                    continue
                if active.get(tenant.id, 0) >= tenant.max_concurrent or call.destination in busy:
                    continue
                call.attempts += 1
                call.lease_owner = self.node_id
                call.lease_expires_at = now + self.lease
                repo.transition(s, call, DIALING, now, reason=f"attempt {call.attempts}",
                                node=self.node_id)
                active[tenant.id] = active.get(tenant.id, 0) + 1
                busy.add(call.destination)
                chosen.append(call)
        self.stats.claimed += len(chosen)
        self._count_finished(refused)
        if chosen:
            self.on_write()
        return chosen

    def _start(self, call: Call) -> None:
        running = _Running(call.id)
        self._running[call.id] = running
        self._idle.clear()
        running.task = asyncio.create_task(self._run(call, running), name=f"call-{call.id}")

    # -- one call ----------------------------------------------------------------------------------

    async def _run(self, call: Call, running: _Running) -> None:
        with log_context(call_id=call.id, tenant=call.tenant_id):  # the call's task only
            await self._run_logged(call, running)

    async def _run_logged(self, call: Call, running: _Running) -> None:
        try:
            await self._place(call, running)
        except asyncio.CancelledError:
            # stop() gave up waiting: leave the row to lease expiry (engine_restart)
            raise
        except Exception as exc:
            log.exception("call %s: dispatcher error", call.id)
            await self._finish_safely(call.id, FAILED, "error", f"error: {type(exc).__name__}")
        finally:
            for token in self._secrets.pop(call.id, []):
                SECRETS.remove(token)
            self._running.pop(call.id, None)
            if not self._running:
                self._idle.set()
            self._wake.set()  # a slot is free

    async def _place(self, call: Call, running: _Running) -> None:
        services = self.services
        scenario = services.catalog.get(call.scenario)
        if scenario is None:
            await self._finish_safely(call.id, FAILED, "failed", "scenario_unavailable")
            return
        try:
            params = self._params(call)
        except SealError as exc:
            log.error("%s", exc)
            await self._finish_safely(call.id, FAILED, "failed", "parameters_unreadable")
            return
        target = self._target(call.destination)

        def progress(status: int) -> None:
            if status in (180, 183) and running.ringing is None:
                running.ringing = asyncio.create_task(
                    self._update(call.id, DIALING, RINGING, reason=f"SIP {status}"))

        # a fresh SIP Call-ID / Asterisk channel id per attempt (a retry is a new dialog)
        started = asyncio.get_running_loop().time()
        running.dial = asyncio.create_task(self.backend.dial(
            target, call_id=f"{call.id}-{call.attempts}", on_progress=progress))
        self.stats.dialed += 1
        try:
            attempt = await self._dial_result(running.dial, started)
        except asyncio.CancelledError:
            if not running.canceled:
                raise
            await self._await_ringing(running)
            await self._finish_safely(call.id, CANCELED, "canceled", "canceled by the client")
            return
        await self._await_ringing(running)
        if attempt.channel is None:
            await self._not_answered(call, attempt)
            return
        channel = running.channel = attempt.channel
        try:
            if not await self._update(call.id, None, ANSWERED, reason="answered",
                                      answered=True, sip_status=attempt.status):
                await channel.hangup()  # no longer ours (recovered elsewhere): never run it
                return
            interpreter = services.catalog.interpreter(call.scenario)
            result = await interpreter.run(channel, params, call_id=call.id)
        finally:
            try:
                await channel.close()
            finally:
                running.channel = None  # with media_ended in one step: counted exactly once
                if self.metrics is not None:
                    self.metrics.media_ended(channel)
        await self._finished(call, result)

    async def _dial_result(self, dial: asyncio.Task[Any], started: float) -> CallAttempt:
        """Await a dial; its setup time (loop clock, from ``started``) is observed whatever the
        result: the attempt's outcome, ``canceled``, or ``error``."""
        outcome = "error"
        try:
            attempt: CallAttempt = await dial
            outcome = attempt.outcome.value
            return attempt
        except asyncio.CancelledError:
            outcome = "canceled"
            raise
        finally:
            if self.metrics is not None:
                self.metrics.observe_setup(outcome, asyncio.get_running_loop().time() - started)

    async def _await_ringing(self, running: _Running) -> None:
        if running.ringing is not None:
            with contextlib.suppress(Exception):
                await running.ringing

    def _params(self, call: Call) -> dict[str, object]:
        params = dict(call.params)
        if call.sealed_params:
            secrets = unseal(self.services.keys.seal_key, call.id, call.sealed_params)
            params.update(secrets)
            # defence in depth: the log scrubber masks these values for the call's life
            self._secrets[call.id] = [SECRETS.add(v) for v in secrets.values()]
        return params

    def _target(self, destination: str) -> str:
        if destination in self.numbers:
            return self.numbers[destination]
        number = check_destination(destination, DestinationRules(allow_international=True,
                                                                 allow_premium=True))
        return self.target.format(e164=number.e164, number=number.e164.lstrip("+"),
                                  national=number.national)

    async def _not_answered(self, call: Call, attempt: CallAttempt) -> None:
        outcome = attempt.outcome.value
        policy = RetryPolicy.from_json(call.retry_policy or None)
        delay = policy.next_attempt_delay(call.attempts, outcome)
        if delay is not None and await self._update(
                call.id, None, QUEUED, reason=f"{outcome}: retry", retry_in=delay,
                outcome=outcome, sip_status=attempt.status):
            self.stats.retried += 1
            return
        await self._finish_safely(call.id, FAILED, outcome, attempt.reason,
                                  sip_status=attempt.status)

    async def _finished(self, call: Call, result: CallResult) -> None:
        evidence = recording = None
        if result.recordings:
            try:
                evidence, recording = await asyncio.to_thread(self._evidence, call, result)
            except Exception:
                log.exception("call %s: evidence could not be written", call.id)
        await self._finish_safely(call.id, FINISHED, result.outcome, result.error,
                                  result=result.result,
                                  timeline=[e.as_dict() for e in result.timeline],
                                  evidence=evidence, recording=recording)

    def _evidence(self, call: Call, result: CallResult) -> tuple[str, str]:
        from .evidence import EvidenceInput, write_evidence

        services = self.services
        scenario = services.catalog.get(call.scenario)
        ended = self._now()
        started = call.answered_at or ended - timedelta(milliseconds=result.duration_ms)
        bundle = write_evidence(
            EvidenceInput(call_id=call.id, tenant_id=call.tenant_id, scenario=call.scenario,
                          scenario_sha256=scenario.source_sha256 if scenario else
                          call.scenario_sha256,
                          destination=call.destination, outcome=result.outcome,
                          result=result.result, started_at=started, ended_at=ended,
                          timeline=result.timeline, audio=Path(result.recordings[0])),
            services.recordings_dir / "evidence", key=services.keys.evidence_key,
            key_id=services.keys.evidence_key_id)
        root = services.recordings_dir
        return (os.path.relpath(bundle.directory, root), os.path.relpath(bundle.audio_path, root))
