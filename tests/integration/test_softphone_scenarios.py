"""Failing paths of every shipped scenario over real SIP/RTP calls to our QA softphone.

(The passing paths run in `make demo`, see test_demo_calls.py.) The softphone types each cue
after the engine's next prompt ends; all calls run at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ars_engine.demo import LocalCore
from ars_engine.demo_calls import CallCase, CallRow, run_call_case
from ars_engine.demo_cases import DEMO_CASES
from ars_engine.media.library import MediaLibrary
from ars_engine.scenario.corehttp import AiohttpCoreClient
from ars_engine.telephony.embedded import EmbeddedBackend, SipSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FAILING = ("b_wrong_key", "c_wrong_code", "c_no_input", "d_wrong_pin", "e_refused",
           "f_event_invalid_keys", "f_amount_wrong")


async def test_failing_paths_end_as_expected_over_real_calls(
        real_media: MediaLibrary, tmp_path: Path) -> None:
    by_name = {c.name: c for c in DEMO_CASES}
    cases = [CallCase(n, by_name[n].scenario, dict(by_name[n].params), tuple(by_name[n].keys),
                      by_name[n].expected_outcome) for n in FAILING]
    local = LocalCore()
    await local.start()
    core = AiohttpCoreClient()
    try:
        async with EmbeddedBackend(SipSettings(answer_timeout=5.0), tmp_path / "engine") as b:
            rows: list[CallRow] = list(await asyncio.gather(*(
                run_call_case(c, b, real_media, tmp_path, ROOT / "scenarios", local.url, core)
                for c in cases)))
    finally:
        await core.close()
        await local.stop()
    got = {row.case.name: row.outcome for row in rows}
    assert got == {c.name: c.expected for c in cases}
    assert all(row.sip_status == 200 and row.heard_wav for row in rows)
    refused = next(r for r in rows if r.case.name == "e_refused")
    assert refused.recordings, "type E records the consent part even when refused"
