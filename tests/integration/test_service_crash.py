"""The engine killed with SIGKILL during calls, then started again (a real `ars-engine serve`
subprocess, real SIP calls to QA softphones, the webhook receiver down until after the restart).

Every call must reach a terminal state with exactly one terminal webhook (the receiver
de-duplicates by event id and counts), calls in progress at the kill must fail with reason
``engine_restart``, queued ones must be placed after the restart, and no number may ring twice.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ars_engine.qa.receiver import WebhookReceiver
from ars_engine.qa.softphone import AnswerFeed, Softphone, SoftphoneBehaviour, parse_cues
from reliability.cluster import ENGINE, NodeProcess
from tests.pg_peer import free_port

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 150.0
TERMINAL = ("finished", "failed", "canceled")
IN_FLIGHT = 3
QUEUED = 3


@pytest.fixture
async def phones(tmp_path: Path) -> AsyncIterator[list[Softphone]]:
    made = []
    for index in range(IN_FLIGHT + QUEUED):
        phone = Softphone(("127.0.0.1", 0), SoftphoneBehaviour(keys=parse_cues(["123456"])),
                          tmp_path / f"phone{index}")
        await phone.start()
        made.append(phone)
    yield made
    for phone in made:
        await phone.close()


def _cli(env: dict[str, str], *args: str) -> str:
    import subprocess

    done = subprocess.run([*ENGINE, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def _states(http: aiohttp.ClientSession, url: str, ids: list[str]) -> dict[str, dict]:
    found = {}
    for call_id in ids:
        async with http.get(f"{url}/v1/calls/{call_id}") as resp:
            assert resp.status == 200, await resp.text()
            found[call_id] = await resp.json()
    return found


@pytest.mark.integration
async def test_kill_9_during_calls_then_restart_every_call_ends_once_with_one_webhook(
        tmp_path: Path, phones: list[Softphone]) -> None:
    api_port, hook_port = free_port(), free_port()
    numbers = [f"+8210555{i:05d}" for i in range(len(phones))]
    config = tmp_path / "ars.toml"
    config.write_text(
        "[service]\n"
        f'listen = "127.0.0.1:{api_port}"\n'
        f'data_dir = "{tmp_path / "var"}"\n'
        'node_id = "node-1"\nlease_seconds = 3\npoll_seconds = 0.2\n'
        "[numbers]\n" + "".join(
            f'"{n}" = "sip:qa@{p.address[0]}:{p.address[1]}"\n' for n, p in zip(
                numbers, phones, strict=True)), encoding="utf-8")
    env = {**os.environ, "ARS_RECORDINGS_DIR": str(tmp_path / "rec")}
    created = json.loads(_cli(env, "tenants", "create", "bank", "--config", str(config),
                              "--json"))
    url = f"http://127.0.0.1:{api_port}"
    engine = NodeProcess(1, config, env, tmp_path / "engine.log", api_port)
    receiver = WebhookReceiver(created["webhook_secret"], port=hook_port,
                               path="/hook")  # down until after the restart
    http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {created['api_key']}"})
    try:
        await engine.start()
        later = (datetime.now(UTC) + timedelta(seconds=15)).isoformat()
        ids = []
        for index, number in enumerate(numbers):
            body: dict[str, Any] = {"scenario": "type_c", "to": number,
                                    "params": {"code": "123456"},
                                    "callback_url": f"http://127.0.0.1:{hook_port}/hook"}
            if index >= IN_FLIGHT:
                body["schedule_at"] = later
            async with http.post(f"{url}/v1/calls", json=body) as resp:
                assert resp.status == 201, await resp.text()
                ids.append((await resp.json())["id"])
        in_flight, queued = ids[:IN_FLIGHT], ids[IN_FLIGHT:]
        # the phones answered (the engine may still be writing "answered": either way the
        # calls are in progress and must end as engine_restart)
        feed = AnswerFeed(phones)
        try:
            async with asyncio.timeout(RUN_TIMEOUT):
                assert await feed.call_ids(IN_FLIGHT) == set(in_flight)
        finally:
            feed.close()
        await engine.kill()  # mid-scenario: the callees are listening to the prompts
        await engine.start()
        await receiver.start()  # the core comes back: the outbox delivers everything
        async with asyncio.timeout(RUN_TIMEOUT):
            await asyncio.gather(*(receiver.terminal(call_id) for call_id in ids))
        states = await _states(http, url, ids)
        assert all(c["state"] in TERMINAL for c in states.values())
    finally:
        await http.close()
        await engine.stop()
        await receiver.stop()
    for call_id in in_flight:
        assert (states[call_id]["state"], states[call_id]["reason"]) == ("failed",
                                                                         "engine_restart")
    for call_id in queued:
        assert (states[call_id]["state"], states[call_id]["outcome"]) == ("finished", "success")
    assert receiver.terminal_per_call() == Counter({call_id: 1 for call_id in ids})
    assert receiver.bad_signatures == 0
    for phone, call_id in zip(phones, ids, strict=True):  # never dialed twice
        assert [i.rsplit("-", 1)[0] for i in phone.invites] == [call_id]
