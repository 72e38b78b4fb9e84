"""The Asterisk backend end to end against a real Asterisk 22 (tests/integration/asterisk_peer.py):
AMI originate → FastAGI session → scenario → result, with the same outcomes as the SIP backend.

* every shipped scenario's passing path over PJSIP to our QA softphone (it answers, listens for
  the end of each prompt, presses its keys as RFC 4733 events), all seven calls at once;
* every shipped scenario's passing path over Local channels whose far end presses the keys, and
  type C's right and wrong code;
* busy, no answer, rejected, congested far ends → the outcomes of outcomes.py;
* the AMI connection dropped mid-call: the scenario still ends with its result, the client
  reconnects; Asterisk restarted while idle: the next call works;
* ``ars-engine call --backend asterisk`` with the config file.

Skipped, saying why, when ../shared/asterisk is not there.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
from asterisk_peer import AsteriskPeer

from ars_engine.demo import LocalCore
from ars_engine.demo_calls import CallCase, call_cases, run_call_case
from ars_engine.media.library import MediaLibrary
from ars_engine.scenario.corehttp import AiohttpCoreClient
from ars_engine.scenario.interpreter import Interpreter
from ars_engine.scenario.loader import load_scenario
from ars_engine.telephony.ami.client import AmiSettings
from ars_engine.telephony.asterisk import AsteriskBackend, AsteriskChannel, AsteriskSettings
from ars_engine.telephony.outcomes import Outcome

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
CALL_TIMEOUT = 90.0  # one whole call, scenario included (type E's consent text is the longest)
RECONNECT_TIMEOUT = 30.0


def settings(peer: AsteriskPeer, tmp_path: Path, **kw: object) -> AsteriskSettings:
    ami = AmiSettings(host=peer.ami_host, port=peer.ami_port, username=peer.ami_user,
                      secret=peer.ami_secret, reconnect_min=0.2, reconnect_max=1.0)
    base: dict[str, object] = {"ami": ami, "sounds_dir": peer.sounds_dir,
                               "agi_port": peer.agi_port, "recordings_dir": tmp_path / "rec",
                               "answer_timeout": 10.0}
    base.update(kw)
    return AsteriskSettings(**base)  # type: ignore[arg-type]


async def test_shipped_scenarios_pass_over_pjsip_to_the_qa_softphone(
        asterisk_peer: AsteriskPeer, real_media: MediaLibrary, tmp_path: Path) -> None:
    cases = [c for c in call_cases() if c.mode == "answer"]
    assert {c.scenario for c in cases} == {p.name for p in SCENARIOS.glob("*.yaml")}
    local = LocalCore()
    await local.start()
    core = AiohttpCoreClient()
    try:
        async with AsteriskBackend(settings(asterisk_peer, tmp_path)) as backend, \
                asyncio.timeout(CALL_TIMEOUT):
            # All at once, each softphone on its own port: endpoint "softphone" of pjsip.conf
            # with the softphone's URI in the dial string (PJSIP/endpoint/URI).
            rows = await asyncio.gather(*(run_call_case(
                case, backend, real_media, tmp_path / "calls", SCENARIOS, local.url, core,
                target="PJSIP/softphone/sip:qa@{host}:{port}") for case in cases))
    finally:
        await core.close()
        await local.stop()
    wrong = [(r.case.name, r.outcome, r.error) for r in rows if r.outcome != r.case.expected]
    assert not wrong, wrong
    consent = next(r for r in rows if r.case.scenario == "type_e.yaml")
    assert consent.recordings and all(Path(p).stat().st_size > 8000 for p in consent.recordings)


async def run_type_c(backend: AsteriskBackend, media: MediaLibrary, keys: str,
                     **variables: str) -> tuple[str, AsteriskChannel]:
    scenario = load_scenario(SCENARIOS / "type_c.yaml", prompts=media.catalogue)
    attempt = await backend.dial("Local/s@callee-keys",
                                 variables={"__KEYS": keys, **variables})
    assert attempt.outcome is Outcome.ANSWERED, attempt.reason
    channel = attempt.channel
    assert isinstance(channel, AsteriskChannel)
    try:
        result = await Interpreter(scenario, media).run(channel, {"code": "123456"})
    finally:
        await channel.close()
    return result.outcome, channel


async def test_type_c_over_a_local_channel_right_and_wrong_code(
        asterisk_peer: AsteriskPeer, real_media: MediaLibrary, tmp_path: Path) -> None:
    async with AsteriskBackend(settings(asterisk_peer, tmp_path)) as backend, \
            asyncio.timeout(CALL_TIMEOUT):
        (right, channel), (wrong, _) = await asyncio.gather(
            run_type_c(backend, real_media, "123456"),
            run_type_c(backend, real_media, "654321" * 3, __KEYS_DELAY="1"))
    assert right == "success"
    assert wrong == "failed"  # three wrong codes
    assert not channel.prompt_files, "per-call prompt files are deleted with the call"


@pytest.mark.parametrize(("context", "outcome"), [
    ("callee-busy", Outcome.BUSY),
    ("callee-noanswer", Outcome.NO_ANSWER),
    ("callee-reject", Outcome.REJECTED),
    ("callee-congestion", Outcome.NETWORK_ERROR),
])
async def test_unanswered_calls_get_the_outcome_of_their_cause(
        asterisk_peer: AsteriskPeer, tmp_path: Path, context: str, outcome: Outcome) -> None:
    async with AsteriskBackend(settings(asterisk_peer, tmp_path, answer_timeout=3.0)) as backend:
        async with asyncio.timeout(CALL_TIMEOUT):
            attempt = await backend.dial(f"Local/s@{context}")
    assert attempt.outcome is outcome, attempt.reason
    assert attempt.channel is None


async def test_ami_dropped_mid_call_the_call_still_ends_with_its_result(
        asterisk_peer: AsteriskPeer, real_media: MediaLibrary, tmp_path: Path) -> None:
    async with AsteriskBackend(settings(asterisk_peer, tmp_path)) as backend:
        scenario = load_scenario(SCENARIOS / "type_c.yaml", prompts=real_media.catalogue)
        async with asyncio.timeout(CALL_TIMEOUT):
            attempt = await backend.dial("Local/s@callee-keys",
                                         variables={"__KEYS": "123456", "__KEYS_DELAY": "3"})
            assert attempt.channel is not None, attempt.reason
            drops = backend.ami.disconnects
            backend.ami.drop_connection("test: AMI connection lost mid-call")
            try:
                result = await Interpreter(scenario, real_media).run(attempt.channel,
                                                                     {"code": "123456"})
            finally:
                await attempt.channel.close()
        assert result.outcome == "success"
        assert backend.ami.disconnects == drops + 1  # the drop did happen during the call
        async with asyncio.timeout(RECONNECT_TIMEOUT):
            await backend.ami.wait_connected()
            again = await backend.dial("Local/s@callee-busy")
        assert again.outcome is Outcome.BUSY


async def test_asterisk_restarted_while_idle_then_the_next_call_works(
        asterisk_peer: AsteriskPeer, tmp_path: Path) -> None:
    async with AsteriskBackend(settings(asterisk_peer, tmp_path)) as backend:
        await asterisk_peer.restart()
        async with asyncio.timeout(RECONNECT_TIMEOUT):
            await backend.ami.wait_connected()
            attempt = await backend.dial("Local/s@callee-busy")
        assert attempt.outcome is Outcome.BUSY, attempt.reason


async def test_cli_call_with_the_asterisk_backend(asterisk_peer: AsteriskPeer,
                                                  tmp_path: Path) -> None:
    config = tmp_path / "ars.toml"
    config.write_text(textwrap.dedent(f"""
        [asterisk]
        ami = "127.0.0.1:{asterisk_peer.ami_port}"
        ami_username = "{asterisk_peer.ami_user}"
        ami_secret_env = "TEST_AMI_SECRET"
        agi_listen = "127.0.0.1:{asterisk_peer.agi_port}"
        sounds_dir = "{asterisk_peer.sounds_dir}"
        dial = "Local/s@{{target}}"
        answer_timeout = 5
        """), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARS_")}
    env.update(TEST_AMI_SECRET=asterisk_peer.ami_secret, ARS_TTS_ONLINE="0",
               ARS_RECORDINGS_DIR=str(tmp_path / "rec"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ars_engine.cli", "call", "callee-busy", "--backend", "asterisk",
        "--config", str(config), "--scenario", str(SCENARIOS / "type_c.yaml"),
        "-p", "code=123456", "--json", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(CALL_TIMEOUT):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["backend"] == "asterisk" and result["outcome"] == "busy", result
    assert asterisk_peer.ami_secret.encode() not in out + err


async def test_shipped_scenarios_over_local_channels(
        asterisk_peer: AsteriskPeer, real_media: MediaLibrary, tmp_path: Path) -> None:
    """Every passing case at once, each on a Local channel whose far end presses all of the
    case's keys in one go 1 s after answering: keys typed ahead of the prompts stay buffered
    for the gathers."""
    local = LocalCore()
    await local.start()
    core = AiohttpCoreClient()

    async def one(backend: AsteriskBackend, case: CallCase) -> tuple[str, str, str | None]:
        scenario = load_scenario(SCENARIOS / case.scenario, prompts=real_media.catalogue)
        params: dict[str, object] = dict(case.params)
        if "callback_url" in scenario.params:
            params["callback_url"] = local.url
        attempt = await backend.dial("Local/s@callee-keys",
                                     variables={"__KEYS": "".join(case.keys)})
        assert attempt.channel is not None, attempt.reason
        try:
            result = await Interpreter(scenario, real_media, core=core).run(attempt.channel,
                                                                            params)
        finally:
            await attempt.channel.close()
        return case.name, result.outcome, result.error

    cases = [c for c in call_cases() if c.mode == "answer"]
    try:
        async with AsteriskBackend(settings(asterisk_peer, tmp_path)) as backend, \
                asyncio.timeout(CALL_TIMEOUT):
            outcomes = await asyncio.gather(*(one(backend, c) for c in cases))
    finally:
        await core.close()
        await local.stop()
    assert [o[1] for o in outcomes] == [c.expected for c in cases], outcomes


async def test_the_shipped_manager_conf_user_can_place_calls(
        asterisk_peer: AsteriskPeer, real_media: MediaLibrary, tmp_path: Path) -> None:
    """asterisk/manager.conf as shipped (restricted rights, event filters), with only its secret
    and port filled in: the engine logs in, dials, and sees the outcome events it needs."""
    sample = (ROOT / "asterisk" / "manager.conf").read_text(encoding="utf-8")
    assert "secret = CHANGE-ME" in sample and "port = 5038" in sample
    (asterisk_peer.etc_dir / "manager.conf").write_text(
        sample.replace("secret = CHANGE-ME", "secret = sample-secret")
        .replace("port = 5038", f"port = {asterisk_peer.ami_port}"), encoding="utf-8")
    await asterisk_peer.cli_async("module reload manager")
    ami = AmiSettings(host=asterisk_peer.ami_host, port=asterisk_peer.ami_port,
                      username="ars-engine", secret="sample-secret")
    async with AsteriskBackend(settings(asterisk_peer, tmp_path, ami=ami,
                                        answer_timeout=3.0)) as backend, \
            asyncio.timeout(CALL_TIMEOUT):
        busy = await backend.dial("Local/s@callee-busy")
        outcome, _ = await run_type_c(backend, real_media, "123456")
    assert busy.outcome is Outcome.BUSY, busy.reason
    assert outcome == "success"
