"""Stopping the service's background loops (dispatcher, webhook sender, alert monitor) the same
way: a loop told to stop gets to end its round, then is cancelled if it overruns."""

from __future__ import annotations

import asyncio
import contextlib


async def finish_round(task: asyncio.Task[None], grace: float) -> None:
    """Wait up to ``grace`` seconds for ``task`` (already told to stop) to end by itself, then
    cancel it. Why not cancel at once: a task cancelled in the middle of a SQLite statement
    leaves the database write-locked until the statement is garbage-collected."""
    try:
        async with asyncio.timeout(grace):
            await asyncio.shield(task)
    except TimeoutError:
        await cancel_and_wait(task)


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
