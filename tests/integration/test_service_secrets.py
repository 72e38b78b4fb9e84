"""Acceptance: secrets are masked in the service's logs, database, webhooks, API answers,
exceptions and evidence. A test plants a code and a PIN hash in every path of the service and
greps every output for them (the scenario/CLI layer has its own: test_secrets_never_leak.py).

One call, on SQLite and on PostgreSQL, goes the whole way: ``POST /v1/calls`` on a real aiohttp
server (with an Idempotency-Key, then the refused variants: the key reused with another body, a
malformed code, a malformed hash, an unknown parameter, an unknown field and broken JSON all
holding the secret), a dispatcher placing it on the embedded SIP backend to the QA softphone, which
types the code and the PIN, a recording and its evidence bundle, a webhook sender delivering to a
real receiver. Then every output is searched: API bodies and headers, ``SELECT *`` of every table
(while queued and at the end), webhook bodies and headers, ``caplog`` at DEBUG for every logger
and a log file, the text of the exceptions raised, the files under the recordings directory, the
PostgreSQL server log, the TTS requests and ``repr`` of the stored row. The log handlers have no
``ScrubbingFilter``: the test checks what the code logs, not what a last line of defence hides.

Forbidden: the code and the PIN (as is, spaced, comma-separated, read in Korean), the PIN's salted
hash (whole and parts of its digest), the refused variants, and the config secrets met on the way
(the API key's secret part, the tenant's webhook secret, the master key). The hash is an
input the client declares, but the engine declares ``hash`` parameters secret too (a salted hash
of a 6-digit PIN falls to a brute force in a moment), so it is held to the same rule: it may be
in the requests the test sends, and nowhere the service writes. The PIN has 6 digits, not 4: a
4-digit string turns up by chance in ports, microseconds and hex digests.

Not vacuous: the softphone typed both values (its own report shows the keys), the call's outcome is
``success`` (both checks passed: the secrets reached the comparisons), the sealed column opens to
them, the webhooks arrived signed, and the logs hold the call's DEBUG lines.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import textwrap
import traceback
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select, text

from ars_engine.api.app import create_app
from ars_engine.config import Settings
from ars_engine.errors import FieldError
from ars_engine.media.library import MediaLibrary
from ars_engine.qa.softphone import Softphone, SoftphoneBehaviour, parse_cues
from ars_engine.scenario.secrets import make_hash
from ars_engine.service import signing
from ars_engine.service.calls import check_request
from ars_engine.service.catalog import ScenarioCatalog
from ars_engine.service.dispatcher import Dispatcher
from ars_engine.service.evidence import verify_evidence
from ars_engine.service.masking import DEFAULT_REGISTRY, ScrubbingFilter
from ars_engine.service.payloads import call_summary
from ars_engine.service.runtime import Services
from ars_engine.service.seal import SealError, unseal
from ars_engine.service.webhooks import WebhookSender
from ars_engine.store import repo
from ars_engine.store.db import Store
from ars_engine.store.models import DELIVERED, Call, Tenant, WebhookEvent
from ars_engine.telephony.embedded import EmbeddedBackend, SipSettings

pytestmark = pytest.mark.integration

CODE = "739184"
PIN = "482617"
PIN_HASH = make_hash(PIN, "s4lt")
BAD_CODE = CODE + "ab"  # letters: refused, and its echo would hold the code
BAD_HASH = PIN_HASH[:-1] + "z"  # not hex: refused, and its echo would hold the digest
MASTER_KEY = "5ec7e7" * 10 + "a1b2c3d4"  # 34 bytes of hex: the engine's root secret
NUMBER, NUMBER_E164 = "010-1234-0001", "+821012340001"
TENANT = "bank"
IDEMPOTENCY_KEY = "order-1-attempt-1"
CALL_TIMEOUT = 60.0
SCENARIO = """
    scenario: verify
    params:
      code: {type: secret, pattern: '^[0-9]{6}$'}
      pin_hash: {type: hash}
    defaults:
      gather: {first_digit_timeout: 10, inter_digit_timeout: 5}
    steps:
      rec:
        record: {action: start, name: verify}
        next: ask_code
      ask_code:
        gather: {prompt: {prompt: c_enter_code}, digits: 6, into: entered, secret: true}
        on: {ok: check_code, timeout: failed, incomplete: failed}
      check_code:
        check: {input: entered, equals: code}
        on: {pass: ask_pin, fail: failed}
      ask_pin:
        gather: {prompt: {prompt: d_enter_pin}, digits: 6, into: pin, secret: true}
        on: {ok: check_pin, timeout: failed, incomplete: failed}
      check_pin:
        check: {input: pin, hash: pin_hash}
        on: {pass: stop, fail: failed}
      stop:
        record: stop
        next: done
      done:
        finish: {outcome: success, result: {verified: true}}
      failed:
        finish: {outcome: failed, result: {verified: false}}
    """


def digit_forms(value: str) -> list[str]:
    """A digit string as is, spaced, comma-separated (how keys are shown) and read in Korean."""
    korean = dict(zip("0123456789", "공일이삼사오육칠팔구", strict=True))
    read = [korean[d] for d in value]
    return [value, " ".join(value), ",".join(value), "".join(read), " ".join(read)]


def forbidden(api_key: str, webhook_secret: str) -> list[str]:
    """Every string no output may hold: the planted secrets, the refused variants of them, and
    the config secrets (the API key's secret part, the webhook signing secret, the master key)."""
    digest = PIN_HASH.rsplit("$", 1)[1]
    key_secret = api_key.split("_", 2)[2]  # ars_<id>_<secret>: the id is public
    assert len(key_secret) >= 16
    return [*digit_forms(CODE), *digit_forms(PIN), PIN_HASH, digest[:16], digest[-16:],
            BAD_CODE, BAD_HASH, key_secret, webhook_secret, MASTER_KEY]


@dataclass
class Outputs:
    """Everything the service wrote, by where it was found."""

    texts: dict[str, str] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)

    def add(self, where: str, value: str | bytes) -> None:
        if isinstance(value, bytes):
            self.blobs[f"{where} #{len(self.blobs)}"] = value
        else:
            self.texts[f"{where} #{len(self.texts)}"] = value

    def leaks(self, secrets: list[str]) -> list[str]:
        found = [f"{secret!r} in {where}: …{text[max(0, i - 80):i + 80]}…"
                 for where, text in self.texts.items() for secret in secrets
                 if (i := text.find(secret)) >= 0]
        found += [f"{secret!r} ({encoding}) in the bytes of {where}"
                  for where, blob in self.blobs.items() for secret in secrets
                  for encoding in ("utf-8", "utf-16-le") if secret.encode(encoding) in blob]
        return found


class Receiver:
    """The client's webhook endpoint on 127.0.0.1: keeps every request's headers and raw body."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.finished = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hooks"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        if request.headers.get("X-ARS-Event-Type") in ("call.finished", "call.failed"):
            self.finished.set()
        return web.Response(text="ok")


@dataclass
class Api:
    """The API's client: keeps every answer's headers and body in ``outputs``."""

    client: TestClient[Any, Any]
    api_key: str
    outputs: Outputs
    last_headers: dict[str, str] = field(default_factory=dict)

    async def post(self, body: object = None, *, raw: str | None = None,
                   key: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        if raw is not None:
            headers["Content-Type"] = "application/json"
        response = await self.client.post("/v1/calls", headers=headers, data=raw,
                                          json=None if raw is not None else body)
        return response.status, await self._keep(response)

    async def get(self, path: str) -> tuple[int, Any]:
        response = await self.client.get(path, headers={"Authorization":
                                                        f"Bearer {self.api_key}"})
        return response.status, await self._keep(response)

    async def _keep(self, response: Any) -> Any:
        where = f"{response.method} {response.url.path} → {response.status}"
        raw = await response.read()
        self.last_headers = dict(response.headers)
        self.outputs.add(f"{where} headers", "\n".join(f"{k}: {v}"
                                                       for k, v in response.headers.items()))
        if response.content_type.startswith("audio/"):
            self.outputs.add(f"{where} body", raw)
            return raw
        body = raw.decode("utf-8")
        self.outputs.add(f"{where} body", body)
        return json.loads(body) if body else None


def call_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"scenario": "verify", "to": NUMBER, "reference": "order-1",
                            "params": {"code": CODE, "pin_hash": PIN_HASH}}
    body.update(changes)
    return body


def exception_text(exc: BaseException) -> str:
    """The traceback as printed, and str/repr/args of the exception and every one it chains."""
    parts, seen = ["".join(traceback.format_exception(exc))], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


async def dump_database(store: Store) -> tuple[list[str], str]:
    """Every table of the database (as it is, not as the models say) and ``SELECT *`` of each."""
    async with store.engine.connect() as connection:
        tables = sorted(await connection.run_sync(
            lambda sync: sa_inspect(sync).get_table_names()))
        dump = [f"{table}: {(await connection.execute(text(f'SELECT * FROM {table}'))).all()!r}"
                for table in tables]
    return tables, "\n".join(dump)


@pytest.fixture
def every_log(caplog: pytest.LogCaptureFixture, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """DEBUG for every logger, none disabled, into caplog and a log file (returned)."""
    caplog.set_level(logging.DEBUG)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            caplog.set_level(logging.DEBUG, logger=name)
            monkeypatch.setattr(logger, "disabled", False)
            monkeypatch.setattr(logger, "propagate", True)
    path = tmp_path / "service.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        yield path
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


@pytest.fixture
async def services(store: Store, tmp_path: Path, tone_media: MediaLibrary) -> Services:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "verify.yaml").write_text(textwrap.dedent(SCENARIO), encoding="utf-8")
    settings = Settings.from_env({"ARS_DATA_DIR": str(tmp_path / "var"),
                                  "ARS_RECORDINGS_DIR": str(tmp_path / "rec"),
                                  "ARS_SECRET_KEY": MASTER_KEY})
    settings = replace(settings, service=replace(settings.service, lease_seconds=3.0,
                                                 poll_seconds=0.2))
    catalog = ScenarioCatalog.load(folder, tone_media)
    assert set(catalog.scenarios) == {"verify"}, catalog.problems
    return Services.build(settings, store, catalog)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = Receiver()
    await hooks.start()
    try:
        yield hooks
    finally:
        await hooks.stop()


async def add_tenant(services: Services) -> tuple[Tenant, str]:
    now = datetime.now(UTC)
    async with services.store.session() as s, s.begin():
        tenant = Tenant(id=TENANT, name="Bank", created_at=now, disabled=False,
                        allowed_scenarios=None, max_concurrent=10, per_number_limit=100,
                        per_number_window_s=3600, destination_rules={})
        s.add(tenant)
        await s.flush()
        _, api_key = await repo.create_api_key(s, TENANT, services.keys.api_key_pepper, now=now)
    return tenant, api_key


async def test_code_and_pin_hash_reach_the_checks_and_leak_into_no_output_of_the_service(
        services: Services, receiver: Receiver, every_log: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, tone_media: MediaLibrary,
        request: pytest.FixtureRequest) -> None:
    outputs = Outputs()
    pg_log = _postgres_log(request, services.store)
    pg_log_start = pg_log.stat().st_size if pg_log else 0
    tenant, api_key = await add_tenant(services)
    body = call_body(callback_url=receiver.url)
    async with TestClient(TestServer(create_app(services))) as client:
        api = Api(client, api_key, outputs)
        call_id = await create_and_refuse(api, body)
        raised = await while_queued(services, tenant, call_id, body, outputs)
        heard = await place_call(services, receiver, call_id, tmp_path / "phone")
        detail = await read_back(api, call_id)

    # Not vacuous: the secrets went over the line and passed both checks.
    # The phone's report may miss its last key: the engine hangs up as soon as it has it.
    typed = "".join(e["key"] for e in heard["events"] if e["event"] == "key")
    assert typed.startswith(CODE + PIN[:-1]), heard
    assert (detail["state"], detail["outcome"], detail["result"]) == (
        "finished", "success", {"verified": True}), detail
    keys = [e["key"] for e in detail["timeline"] if e["kind"] == "key"]
    assert keys == ["*"] * len(CODE + PIN), keys
    checks = [e["passed"] for e in detail["timeline"] if e["kind"] == "check"]
    assert checks == [True, True], detail["timeline"]
    assert CODE not in DEFAULT_REGISTRY, "the code outlived its call in the log scrubber"

    webhook_secret = services.keys.webhook_secret(TENANT)
    keep_webhooks(receiver, webhook_secret, outputs)
    await keep_store(services, call_id, outputs)
    keep_files(services.recordings_dir, outputs)
    keep_logs(caplog, every_log, call_id, outputs)
    for exc in raised:
        outputs.add(f"exception {type(exc).__name__}", exception_text(exc))
    spoken = tone_media.tts_engine.calls  # type: ignore[attr-defined]
    assert spoken, "no prompt was rendered: vacuous"
    outputs.add("TTS requests", "\n".join(spoken))
    if pg_log is not None:
        with pg_log.open("rb") as log_file:
            log_file.seek(pg_log_start)
            outputs.add("PostgreSQL server log", log_file.read())

    leaks = outputs.leaks(forbidden(api_key, webhook_secret))
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)


# -- the phases ------------------------------------------------------------------------------------
async def create_and_refuse(api: Api, body: dict[str, Any]) -> str:
    """Create the call with an Idempotency-Key, replay it, read it while queued, then send every
    refused variant holding the secret; the call's id."""
    status, created = await api.post(body, key=IDEMPOTENCY_KEY)
    assert status == 201, created
    call_id = str(created["id"])
    assert created["params"] == {"code": "*" * len(CODE), "pin_hash": "*" * len(PIN_HASH)}
    status, replayed = await api.post(body, key=IDEMPOTENCY_KEY)
    assert (status, replayed) == (201, created)
    assert api.last_headers.get("Idempotent-Replayed") == "true"
    status, queued = await api.get(f"/v1/calls/{call_id}")
    assert (status, queued["state"]) == (200, "queued")
    await api.get("/v1/calls")
    refusals = [
        (dict(body, reference="order-2"), IDEMPOTENCY_KEY, 422, "idempotency_key_reused"),
        (_params(code=BAD_CODE), None, 422, "invalid_parameter"),
        (_params(pin_hash=BAD_HASH), None, 422, "invalid_parameter"),
        (_params(otp=CODE), None, 422, "unknown_parameter"),
        (dict(body, code=CODE), None, 422, "unknown_field"),
    ]
    for refused, key, want_status, want_code in refusals:
        status, problem = await api.post(refused, key=key)
        assert (status, problem["code"]) == (want_status, want_code), problem
    broken = json.dumps(body)[:-1] + ',"code": ' + CODE + ",}"
    status, problem = await api.post(raw=broken)
    assert (status, problem["code"]) == (400, "invalid_json"), problem
    return call_id


async def while_queued(services: Services, tenant: Tenant, call_id: str, body: dict[str, Any],
                       outputs: Outputs) -> list[BaseException]:
    """Dump the database while the secrets are sealed in it (and prove they are); raise the
    exceptions that see a sealed value or a refused request, and return them."""
    tables, dump = await dump_database(services.store)
    outputs.add("database while queued", dump)
    assert {"calls", "webhook_events", "idempotency_keys", "call_transitions"} <= set(tables)
    async with services.store.session() as s:
        queued = await repo.get_call(s, None, call_id)
    assert queued is not None and queued.sealed_params
    key = services.keys.seal_key
    assert unseal(key, call_id, queued.sealed_params) == {"code": CODE, "pin_hash": PIN_HASH}
    with pytest.raises(SealError) as sealed:
        unseal(key, "call_someone_else", queued.sealed_params)
    with pytest.raises(FieldError) as bad_code:
        check_request(_params(code=BAD_CODE), tenant, services.catalog, datetime.now(UTC))
    with pytest.raises(FieldError) as unknown:
        check_request(_params(otp=CODE), tenant, services.catalog, datetime.now(UTC))
    with pytest.raises(FieldError) as reused:
        await services.calls.create(tenant, dict(body, reference="order-3"),
                                    idempotency_key=IDEMPOTENCY_KEY, render=call_summary)
    return [sealed.value, bad_code.value, unknown.value, reused.value]


async def place_call(services: Services, receiver: Receiver, call_id: str,
                     phone_dir: Path) -> dict[str, Any]:
    """Dispatch the call to the softphone, which types the code then the PIN; return once its
    last webhook is delivered and recorded. The softphone's report."""
    phone = Softphone(("127.0.0.1", 0), SoftphoneBehaviour(keys=parse_cues([CODE, PIN])),
                      phone_dir)
    await phone.start()
    try:
        async with EmbeddedBackend(SipSettings(answer_timeout=3.0, t1=0.1),
                                   services.recordings_dir / "calls") as backend:
            sender = WebhookSender(services, node_id="node-a")
            recorded = asyncio.Event()
            sender.on_write = recorded.set
            dispatcher = Dispatcher(
                services, backend, node_id="node-a", on_event=sender.wake,
                numbers={NUMBER_E164: f"sip:qa@{phone.address[0]}:{phone.address[1]}"})
            await sender.start()
            await dispatcher.start()
            try:
                async with asyncio.timeout(CALL_TIMEOUT):
                    await receiver.finished.wait()
                    heard = await phone.reports.get()
                    await _all_delivered(services.store, call_id, recorded)
            finally:
                await dispatcher.stop()
                await sender.stop()
    finally:
        await phone.close()
    # A task cancelled inside a SQLite query leaves its statement unfinalized, and the closed
    # connection keeps its write lock until that statement is garbage (Python 3.11 sqlite3
    # closes with sqlite3_close_v2): collect it, or the next write waits busy_timeout.
    gc.collect()
    return heard


async def read_back(api: Api, call_id: str) -> dict[str, Any]:
    """Every read route after the call; the call's detail."""
    status, detail = await api.get(f"/v1/calls/{call_id}")
    assert status == 200, detail
    await api.get("/v1/calls")
    await api.get(f"/v1/webhooks?call_id={call_id}")
    status, _ = await api.get(f"/v1/calls/{call_id}/evidence")
    assert status == 200
    for fmt in ("wav", "mp3"):
        status, audio = await api.get(f"/v1/calls/{call_id}/recording?format={fmt}")
        assert status == 200 and len(audio) > 1000, fmt
    return dict(detail)


def keep_webhooks(receiver: Receiver, secret: str, outputs: Outputs) -> None:
    """The webhooks as received (each signed with the tenant's secret: really ours)."""
    assert receiver.requests, "no webhook arrived"
    for headers, raw in receiver.requests:
        signing.verify(secret, headers[signing.HEADER], raw, now=datetime.now(UTC).timestamp())
        outputs.add("webhook headers", "\n".join(f"{k}: {v}" for k, v in headers.items()))
        outputs.add("webhook body", raw.decode("utf-8"))
    assert json.loads(receiver.requests[-1][1])["call"]["outcome"] == "success"


async def keep_store(services: Services, call_id: str, outputs: Outputs) -> None:
    """The database at the end, and the stored row."""
    _, dump = await dump_database(services.store)
    outputs.add("database after the call", dump)
    async with services.store.session() as s:
        row = await repo.get_call(s, None, call_id, transitions=True)
    assert row is not None and row.sealed_params is None
    assert row.evidence and row.recording
    outputs.add("repr of the Call row", repr(row))
    outputs.add("the Call row's columns", repr({c.key: getattr(row, c.key)
                                                for c in Call.__table__.columns}))
    bundle = services.resolve(row.evidence)
    report = verify_evidence(bundle, key=services.keys.evidence_key)
    assert report.ok, report.describe()
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert [d["key"] for d in manifest["dtmf"]] == ["*"] * len(CODE + PIN)


def keep_files(recordings: Path, outputs: Outputs) -> None:
    """The name and bytes of every file the engine wrote (the softphone's are elsewhere)."""
    files = [p for p in recordings.rglob("*") if p.is_file()]
    assert {"manifest.json", "recording.mp3", "recording.wav"} <= {p.name for p in files}
    for path in files:
        outputs.add("file name", str(path.relative_to(recordings)))
        outputs.add(f"file {path.name}", path.read_bytes())


def keep_logs(caplog: pytest.LogCaptureFixture, log_file: Path, call_id: str,
              outputs: Outputs) -> None:
    """caplog's text and record arguments, and the log file, once shown to hold the call."""
    records = caplog.records
    assert any(r.levelno == logging.DEBUG for r in records), "no DEBUG record: vacuous"
    assert any(call_id in r.getMessage() for r in records), "the call logged nothing: vacuous"
    assert not any(isinstance(f, ScrubbingFilter) for f in caplog.handler.filters)
    written = log_file.read_text(encoding="utf-8")
    assert call_id in written, "the log file does not hold the call: vacuous"
    outputs.add("caplog", caplog.text)
    outputs.add("log record arguments", "\n".join(repr(r.args) for r in records))
    outputs.add("log file", written)


async def _all_delivered(store: Store, call_id: str, recorded: asyncio.Event) -> None:
    """Return once every webhook event of the call is recorded as delivered: the outbox is
    re-read after each round the sender commits (``recorded``)."""
    while True:
        recorded.clear()  # before the read: a round committed after it wakes the wait
        async with store.session() as s:
            statuses = (await s.scalars(select(WebhookEvent.status).where(
                WebhookEvent.call_id == call_id))).all()
        if statuses and set(statuses) == {DELIVERED}:
            return
        await recorded.wait()


def _params(**changes: str) -> dict[str, Any]:
    body = call_body()
    body["params"] = {**body["params"], **changes}
    return body


def _postgres_log(request: pytest.FixtureRequest, store: Store) -> Path | None:
    """The PostgreSQL server's log file when the test runs on PostgreSQL."""
    if not store.is_postgresql:
        return None
    return Path(request.getfixturevalue("postgres").log_path)
