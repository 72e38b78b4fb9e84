"""The running service's parts, built once and handed to the HTTP app (``create_app``), the
CLI and the tests: the store, the scenario catalogue, the master key, the call service, and (in
``ars-engine serve``) the dispatcher and the webhook sender."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .calls import CallService
from .catalog import ScenarioCatalog
from .keys import MasterKey

if TYPE_CHECKING:
    from ..config import Settings
    from ..store.db import Store


log = logging.getLogger("ars_engine.service")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Pulse:
    """"Something changed in the calls": ``notify()`` wakes every ``wait()`` at once. The
    console's live page waits on it (woken by this node's writes, and by its own timeout for
    other nodes' writes)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """True when woken, False when ``timeout`` passed first."""
        event = self._event
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
                return True
        return False


@dataclass(slots=True)
class Services:
    """Everything a request handler needs. ``recordings_dir`` is where calls' recordings and
    evidence bundles live (``Call.recording`` and ``Call.evidence`` are relative to it)."""

    settings: Settings
    store: Store
    catalog: ScenarioCatalog
    keys: MasterKey
    calls: CallService
    recordings_dir: Path
    clock: Callable[[], datetime] = utc_now
    dispatcher: Any = None  # service.dispatcher.Dispatcher when calls are placed
    webhooks: Any = None  # service.webhooks.WebhookSender when events are delivered
    backend: Any = None  # the telephony backend in `serve` (service.health reads its links)
    alerts: Any = None  # service.alerting.AlertMonitor in `serve`
    changes: Pulse = field(default_factory=Pulse)

    @classmethod
    def build(cls, settings: Settings, store: Store, catalog: ScenarioCatalog, *,
              clock: Callable[[], datetime] = utc_now) -> Services:
        keys = settings.master_key()
        calls = CallService(store, catalog, keys, clock=clock)
        return cls(settings, store, catalog, keys, calls, settings.recordings_dir, clock)

    def resolve(self, stored: str) -> Path:
        """A recording/evidence path as stored on a call → a path on disk, never outside
        ``recordings_dir``."""
        path = (self.recordings_dir / stored).resolve()
        root = self.recordings_dir.resolve()
        if root not in path.parents and path != root:
            raise ValueError(f"stored path {stored!r} is outside the recordings directory")
        return path

    def stored_file(self, call_id: str, stored: str | None, member: str | None = None,
                    *, optional: bool = False) -> Path | None:
        """The file behind a call's ``recording``/``evidence`` column (``member`` inside the
        bundle directory); None when the call has none or the file is gone (logged, unless
        the file is ``optional``, like the mp3 that needs ffmpeg)."""
        if not stored:
            return None
        try:
            path = self.resolve(stored)
        except ValueError:
            log.error("call %s: stored path is outside the recordings directory", call_id)
            return None
        if member is not None:
            path = path / member
        if not path.is_file():
            if not optional:
                log.warning("call %s: %s is missing on disk", call_id, path.name)
            return None
        return path
