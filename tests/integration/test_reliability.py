"""The fault-injection suite at CI size (``make reliability`` runs the full counts): each fault
on its own cluster of real engines (reliability/faults.py) must lose and double nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.faults import CI, FAULTS
from reliability.report import Tally, table

pytestmark = pytest.mark.integration


async def _run(name: str, tmp_path: Path) -> Tally:
    said: list[str] = []
    result = await FAULTS[name](tmp_path / name, CI, said.append)
    print("\n".join(said) + "\n" + table([result]))
    assert result.requested > 0
    assert (result.lost, result.doubled) == (0, 0), result.problems
    assert result.terminal == result.delivered_once == result.requested
    return result


async def test_kill_9_of_nodes_during_load(tmp_path: Path) -> None:
    result = await _run("kill9", tmp_path)
    assert result.facts["kills"] == CI.kills and result.facts["hand-overs"] >= 1


async def test_postgresql_stopped_and_started_during_load(tmp_path: Path) -> None:
    result = await _run("pg_restart", tmp_path)
    assert result.facts["outage max s"] >= 1.0
    # results reached while the store was down are kept, not replaced by engine_restart
    assert result.outcomes["finished/success"] == result.requested


async def test_webhook_receiver_down_then_back(tmp_path: Path) -> None:
    result = await _run("webhook_down", tmp_path)
    assert result.facts["receiver down s"] == CI.webhook_down_seconds


async def test_sip_and_rtp_through_a_lossy_relay(tmp_path: Path) -> None:
    result = await _run("lossy", tmp_path)
    assert result.facts["sip datagrams"] > 0
    dropped, duplicated, reordered = map(int, result.facts["rtp dropped/dup/reordered"]
                                         .split("/"))
    assert dropped > 0 and duplicated > 0 and reordered > 0


async def test_recordings_disk_full(tmp_path: Path) -> None:
    result = await _run("disk_full", tmp_path)
    assert result.facts["bytes free"] == 0
    # no consent is reported as recorded when its recording could not be kept
    assert result.outcomes == {"finished/error": result.requested}


async def test_ami_connection_cut_during_load(tmp_path: Path) -> None:
    from tests.integration.asterisk_peer import asterisk_skip_reason

    if reason := asterisk_skip_reason():
        pytest.skip(reason)
    result = await _run("ami_drop", tmp_path)
    assert result.facts["AMI cuts"] == CI.ami_drops
    assert result.facts["AMI connections"] == CI.ami_drops + 1  # reconnected after each cut
