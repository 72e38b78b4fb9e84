"""The operator console in headless Chromium against a real ``ars-engine serve`` with QA
softphones: sign in, a call triggered through the API appears live without a reload, its page
tells its story and plays its recording, the settlement CSV matches the database, scenarios show
their graph, validation errors and the simulator's audio; every page is screenshotted
(test-artifacts/screenshots/) and passes axe-core's WCAG 2 A/AA rules, in Korean and English."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from typing import Any

import pytest

from ars_engine.demo_cases import CONSENT_PARAMS
from ars_engine.service.usage import mask_destination
from tests.browser.conftest import ConsoleServer, check_accessibility, shoot, tab_order

TERMINAL = ("finished", "failed", "canceled")


def calls_in_db(server: ConsoleServer) -> dict[str, dict[str, Any]]:
    """The calls table, read directly (the engine keeps SQLite in WAL mode: readers are fine)."""
    with sqlite3.connect(server.data_dir / "ars.db") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM calls").fetchall()
    return {row["id"]: dict(row) for row in rows}


def transitions_in_db(server: ConsoleServer, call_id: str) -> list[str]:
    with sqlite3.connect(server.data_dir / "ars.db") as db:
        return [row[0] for row in db.execute(
            "SELECT to_state FROM call_transitions WHERE call_id = ? ORDER BY id", (call_id,))]


def test_sign_in_page_is_accessible_and_refuses_a_wrong_password(
        console_server: ConsoleServer, page: Any) -> None:
    page.goto(console_server.console("login"))
    assert page.get_by_label("아이디").is_visible() and page.get_by_label("비밀번호").is_visible()
    shoot(page, "login-ko")
    check_accessibility(page)
    page.get_by_label("아이디").fill(console_server.admin.username)
    page.get_by_label("비밀번호").fill("not-the-password")
    page.get_by_role("button", name="로그인").click()
    page.get_by_role("alert").wait_for()
    assert "올바르지 않습니다" in page.get_by_role("alert").inner_text()
    shoot(page, "login-failed")
    check_accessibility(page)


def test_a_call_from_the_api_shows_live_then_its_page_plays_the_recording(
        console_server: ConsoleServer, page: Any) -> None:
    server = console_server
    server.login(page, server.operator)
    live = page.locator("#live-calls")
    live.wait_for()
    shoot(page, "live-empty")
    check_accessibility(page)
    assert tab_order(page)[:2] == ["본문으로 건너뛰기", "실시간 통화"]

    # a call that rings for a while: it must appear on the open page, without a reload
    ringing = server.place_call("type_c", "slow", {"code": "123456"})
    row = page.locator(f'#live-calls tr[data-call="{ringing["id"]}"]')
    row.wait_for()
    page.locator(f'#live-calls tr[data-call="{ringing["id"]}"][data-state="ringing"]').wait_for()
    assert mask_destination(server.phones["slow"].number) in row.inner_text()
    assert "진행 중 1건" in page.locator("#live-status").inner_text()
    shoot(page, "live-ringing")
    check_accessibility(page)
    # canceled through the API: the open page lets it go
    status, body = server.api("POST", f"/v1/calls/{ringing['id']}/cancel")
    assert status in (200, 202), body
    page.locator(f'#live-calls tr[data-call="{ringing["id"]}"]').wait_for(state="detached")

    # a recorded consent call, followed to its end
    consent = server.place_call("type_e", "consent", dict(CONSENT_PARAMS))
    page.locator(f'#live-calls tr[data-call="{consent["id"]}"]').wait_for()
    done = server.wait_call(consent["id"], lambda c: c["state"] in TERMINAL)
    assert (done["state"], done["outcome"]) == ("finished", "success"), done
    page.locator(f'#live-calls tr[data-call="{consent["id"]}"]').wait_for(state="detached")

    # its page: the story, the recording playing in the browser, the verified evidence
    page.goto(server.console(f"calls/{consent['id']}"))
    moves = [m.split("\t")[2] for m in page.locator("#transitions tbody tr").all_inner_texts()]
    korean = {"queued": "대기", "dialing": "발신 중", "ringing": "벨 울림", "answered": "통화 중",
              "finished": "완료"}
    assert moves == [korean[s] for s in transitions_in_db(server, consent["id"])]
    assert moves[-2:] == ["통화 중", "완료"]
    assert page.locator("#timeline tr.ev-key").count() >= 1
    audio = page.locator("#recording")
    duration = audio.evaluate("""a => new Promise((ok, fail) => {
        a.muted = true;
        a.addEventListener('error', () => fail('cannot load the recording'));
        a.addEventListener('timeupdate', () => { if (a.currentTime > 0.2) ok(a.duration); });
        a.play().catch(fail);
    })""")
    assert duration > 1.0
    assert page.locator("#evidence-status").inner_text().startswith("검증됨")
    with page.expect_download() as download:
        page.locator("#evidence-download").click()
    manifest = download.value.path().read_text(encoding="utf-8")
    assert consent["id"] in manifest and '"signature"' in manifest
    shoot(page, "call-page")
    check_accessibility(page)


def test_history_filters_and_the_csv_match_the_database(console_server: ConsoleServer,
                                                        page: Any) -> None:
    server = console_server
    placed = [server.place_call("type_c", "answer", {"code": "123456"}, reference="order-b1"),
              server.place_call("type_c", "busy", {"code": "123456"}, reference="order-b2",
                                retry={"max_attempts": 1})]
    other = server.place_call("type_c", "answer", {"code": "123456"},
                              tenant=server.other_tenant, reference="order-other")
    for call in [*placed, other]:
        server.wait_call(call["id"], lambda c: c["state"] in TERMINAL)

    server.login(page, server.operator)
    page.goto(server.console("calls"))
    ids = page.locator("#history tbody tr").evaluate_all("rows => rows.map(r => r.dataset.call)")
    assert placed[0]["id"] in ids and placed[1]["id"] in ids
    assert other["id"] not in ids  # another tenant's call, never shown to this operator
    shoot(page, "history")
    check_accessibility(page)
    page.get_by_label("상태").select_option("failed")
    page.get_by_role("button", name="조회").click()
    page.wait_for_url(re.compile(r"state=failed"))
    shown = page.locator("#history tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.call)")
    assert placed[1]["id"] in shown and placed[0]["id"] not in shown

    page.goto(server.console("usage"))
    shoot(page, "usage")
    check_accessibility(page)
    with page.expect_download() as download:
        page.locator("#export-csv").click()
    raw = download.value.path().read_bytes()
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    db = {k: v for k, v in calls_in_db(server).items() if v["tenant_id"] == server.tenant_id}
    assert {r["call_id"] for r in rows} == set(db)
    for r in rows:
        call = db[r["call_id"]]
        assert (r["state"], r["outcome"] or None) == (call["state"], call["outcome"])
        assert r["billable"] == ("1" if call["state"] == "finished" else "0")
        assert r["verified"] == ("1" if call["outcome"] == "success"
                                 and call["state"] == "finished" else "0")
    # the usage table agrees with the same rows
    cells = page.locator(f'#usage tr[data-tenant="{server.tenant_id}"] td').all_inner_texts()
    assert int(cells[0]) == len(rows)
    assert int(cells[3]) == sum(r["billable"] == "1" for r in rows)


@pytest.mark.parametrize("locale", ["en-US"])
def test_scenarios_graph_validation_and_simulator_in_english(console_server: ConsoleServer,
                                                             page: Any) -> None:
    server = console_server
    server.login(page, server.admin, lang="en")
    page.goto(server.console("scenarios"))
    assert page.locator("html").get_attribute("lang") == "en"
    shoot(page, "scenarios")
    check_accessibility(page)
    page.get_by_role("link", name="type_c").click()
    graph = page.locator("#flow-graph svg[role=img]")
    graph.wait_for()
    assert graph.locator("title").first.text_content()
    shoot(page, "scenario-graph")
    check_accessibility(page)

    # a mistake in the YAML is shown at its line, in place
    editor = page.get_by_role("textbox", name="Edit the scenario YAML")
    text = editor.input_value()
    editor.fill(text.replace("next: ask", "next: nowhere", 1))
    page.get_by_role("button", name="Validate").click()
    page.locator("#problems").wait_for()
    problem = page.locator("#problems li").first.inner_text()
    assert "nowhere" in problem
    page.locator("ol.code li.bad").first.wait_for()
    shoot(page, "scenario-invalid")
    check_accessibility(page)

    # the simulator plays what the callee would hear
    page.get_by_role("textbox", name="Edit the scenario YAML").fill(text)
    page.locator("#param_code").fill("482913")
    assert page.get_by_role("textbox", name="code *").count() == 1  # labelled
    page.get_by_role("textbox", name="Keys pressed").fill("482913")
    page.get_by_role("button", name="Run").click()
    page.locator("#sim-outcome").wait_for()
    assert page.locator("#sim-outcome").inner_text() == "success"
    assert "482913" not in page.content()
    seconds = page.locator("#sim-audio").evaluate("""a => new Promise((ok, fail) => {
        if (a.readyState >= 1) return ok(a.duration);
        a.addEventListener('loadedmetadata', () => ok(a.duration));
        a.addEventListener('error', () => fail('cannot load'));
    })""")
    assert seconds > 3.0
    shoot(page, "simulator")
    check_accessibility(page)


def test_alerts_page_and_sign_out(console_server: ConsoleServer, page: Any) -> None:
    server = console_server
    server.login(page, server.admin)
    page.goto(server.console("alerts"))
    shoot(page, "alerts")
    check_accessibility(page)
    page.get_by_role("button", name="로그아웃").click()
    page.wait_for_url(re.compile(r"/console/login"))
    page.goto(server.console("calls"))
    assert "/console/login" in page.url  # the session is gone
