"""The dispatcher on the Asterisk backend (a real Asterisk 22: AMI originate, FastAGI scenario)
calling the QA softphone over PJSIP: the same call life and outbox as on the embedded backend.
Skipped, saying why, when ../shared/asterisk is not there."""

from __future__ import annotations

from pathlib import Path

import pytest
from asterisk_peer import AsteriskPeer
from test_asterisk_backend import settings as asterisk_settings
from test_dispatcher import (  # noqa: F401 - fixtures
    _events,
    _one_call,
    _phone,
    scenario_dir,
    services,
)

from ars_engine.service.runtime import Services
from ars_engine.telephony.asterisk import AsteriskBackend

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_dispatcher_places_a_call_through_asterisk_and_records_its_life(
        asterisk_peer: AsteriskPeer, services: Services,  # noqa: F811 - the fixture
        tmp_path: Path) -> None:
    phone = await _phone(tmp_path, "phone")
    target = f"PJSIP/softphone/sip:qa@{phone.address[0]}:{phone.address[1]}"
    async with AsteriskBackend(asterisk_settings(asterisk_peer, tmp_path)) as backend:
        call = await _one_call(services, backend, phone, "+821012349901", target=target)
    assert (call.state, call.outcome, call.result) == ("finished", "success", {"heard": True})
    assert [(t.from_state, t.to_state) for t in call.transitions] == [
        (None, "queued"), ("queued", "dialing"), ("dialing", "answered"),
        ("answered", "finished")]  # this backend does not report ringing yet
    assert call.sealed_params is None
    assert [e.type for e in await _events(services, call.id)] == ["call.finished"]
