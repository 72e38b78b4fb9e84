"""Three real engine nodes on one PostgreSQL (reliability/cluster.py: `ars-engine serve`
subprocesses, each with its own SIP endpoint, QA softphones, a webhook receiver).

A node dies with kill -9 while it holds answered calls and after calls were queued through its
own API: its in-flight calls must end ``failed``/``engine_restart`` exactly once, written by a
surviving node, its queued calls must be placed by the others, nothing may ring twice, and the
registry must show it dead.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from reliability.cluster import ROOT, Cluster, ClusterOptions, Load
from tests.pg_peer import postgres_skip_reason

LEASE = 3.0
SETTLE = 120.0

pytestmark = pytest.mark.integration


async def _terminal(cluster: Cluster, ids: set[str]) -> None:
    """Await the receiver holding a terminal webhook for every call of ``ids``."""
    receiver = cluster.receiver
    assert receiver is not None
    async with asyncio.timeout(SETTLE):
        await asyncio.gather(*(receiver.terminal(call_id) for call_id in ids))


async def test_a_dead_nodes_calls_fail_once_elsewhere_and_its_queue_goes_to_the_others(
        tmp_path: Path) -> None:
    if reason := postgres_skip_reason():
        pytest.fail(reason)  # make setup installs PostgreSQL: its absence is a broken setup
    options = ClusterOptions(nodes=3, phones=9, lease_seconds=LEASE)
    async with Cluster(tmp_path / "cluster", options, say=lambda _text: None) as cluster:
        victim, survivors = cluster.nodes[0], cluster.nodes[1:]
        feed = cluster.answer_feed()
        for node in survivors:  # frozen: the first calls can only be node-0's
            node.pause()
        now = Load(cluster, total=3, rate=100.0, via=[victim])
        await now.run()
        async with asyncio.timeout(60):
            answered = await feed.call_ids(3)
        for node in survivors:
            node.resume()
        # queued through the victim's API, due after its death
        later = Load(cluster, total=3, rate=100.0, via=[victim], schedule_in=2 * LEASE)
        await later.run()
        owners = await cluster.owners()
        assert {owners.get(call_id) for call_id in answered} == {victim.node_id}
        loop = asyncio.get_running_loop()
        await victim.kill()
        killed = loop.time()
        await _terminal(cluster, answered)
        handover = loop.time() - killed
        # the failures are announced within a lease and a heartbeat or two (+ webhook send)
        assert handover < 3 * LEASE, f"hand-over took {handover:.1f} s"
        await _terminal(cluster, set(later.requested.values()))
        rows = await cluster.call_rows()
        history = await cluster.transitions()
        registry = json.loads(subprocess.run(
            [sys.executable, "-m", "ars_engine.cli", "nodes", "--json", "--config",
             str(victim.config)], cwd=ROOT,
            env=victim.env, capture_output=True, text=True, check=True).stdout)
        verdict = await cluster.verdict("cluster", now, later, rows=rows)
    print(f"hand-over of node-0's answered calls: {handover:.1f} s")
    assert (verdict.lost, verdict.doubled, verdict.requested) == (0, 0, 6), verdict.problems
    survivor_ids = {n.node_id for n in survivors}
    for call_id in answered:
        assert (rows[call_id]["state"], rows[call_id]["reason"]) == ("failed", "engine_restart")
        ended = [(to, node) for cid, to, node, _ in history if cid == call_id and to == "failed"]
        assert len(ended) == 1 and ended[0][1] in survivor_ids, ended
    for call_id in later.requested.values():
        assert (rows[call_id]["state"], rows[call_id]["outcome"]) == ("finished", "success")
        dialed_by = {node for cid, to, node, _ in history if cid == call_id and to == "dialing"}
        assert dialed_by <= survivor_ids and dialed_by, dialed_by
    status = {r["node_id"]: r["status"] for r in registry}
    assert status == {"node-0": "dead", "node-1": "alive", "node-2": "alive"}


async def test_a_node_on_asterisk_and_a_node_on_embedded_sip_share_one_queue(
        tmp_path: Path) -> None:
    import shutil
    import tempfile

    from reliability.faults import asterisk_table
    from tests.integration.asterisk_peer import AsteriskPeer, asterisk_skip_reason

    if reason := asterisk_skip_reason():
        pytest.skip(reason)
    socket_dir = Path(tempfile.mkdtemp(prefix="ars-ast-"))
    peer = AsteriskPeer.configure(tmp_path / "asterisk", socket_dir)
    await peer.start()
    try:
        def per_node(index: int) -> tuple[str, str]:  # node-0: Asterisk, node-1: its own SIP
            if index == 0:
                return 'backend = "asterisk"\n', asterisk_table(peer)
            return "", ""

        options = ClusterOptions(nodes=2, phones=8, lease_seconds=LEASE,
                                 extra_service="max_calls = 2\n", per_node=per_node,
                                 env={"ARS_AMI_SECRET": peer.ami_secret})
        async with Cluster(tmp_path / "cluster", options, say=lambda _text: None) as cluster:
            load = Load(cluster, total=8, rate=100.0)
            await load.run()
            await _terminal(cluster, set(load.requested.values()))
            rows = await cluster.call_rows()
            history = await cluster.transitions()
            verdict = await cluster.verdict("mixed", load, rows=rows)
    finally:
        await peer.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)
    assert (verdict.lost, verdict.doubled) == (0, 0), verdict.problems
    assert verdict.outcomes == {"finished/success": 8}
    placed_by = {node for _cid, to, node, _ in history if to == "dialing"}
    assert placed_by == {"node-0", "node-1"}  # both backends took calls from the one queue
