"""The demo runs: for each shipped scenario, its passing path and its failing paths.

Data only. ``make demo`` and the end-to-end tests play each case through the simulator (or a
real call with the scripted softphone) and compare the outcome. ``keys`` uses the syntax of
``ars-engine simulate --keys``: each value is typed at the next gather, after its prompt ended;
``""`` stays silent at that gather (timeout); ``"@12.5=1"`` presses 1 at 12.5 s after answer.
``hangup_at`` is when the callee hangs up (seconds after answer). ``expected_result``, when
given, lists fields the ``result`` mapping must contain with these values (other fields may exist).

Each retry step in the scenarios allows 2 retries (3 attempts in all), so failing cases give 3
inputs; the last attempt decides between ``failed`` (wrong input) and ``timeout`` (no input).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass


def make_hash(value: str, salt: str) -> str:
    """A salted hash in the ``sha256$<salt>$<hex>`` format of ``hash`` parameters.

    hex = HMAC-SHA256(key=salt as UTF-8, msg=value as UTF-8).hexdigest(); the salt must not
    contain ``$``. The lead's ``ars_engine/scenario/secrets.py`` must implement the same format
    (its ``make_hash``/``verify_hash``); this helper lives here for now so the demo data does
    not depend on that module.
    """
    if "$" in salt:
        raise ValueError("the salt must not contain '$'")
    digest = hmac.new(salt.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"sha256${salt}${digest}"


@dataclass(frozen=True, slots=True)
class DemoCase:
    """One demo run of a scenario and what it must end with."""

    name: str
    scenario: str  # file name under scenarios/
    params: dict[str, str]
    keys: list[str]  # same syntax as `ars-engine simulate --keys`, one entry per gather
    expected_outcome: str
    hangup_at: float | None = None
    expected_result: dict[str, object] | None = None


# Demo values. The clear PIN / amount appear only here, to build the hashes the core would send.
DEMO_CODE_4 = "1234"
DEMO_CODE_6 = "123456"
DEMO_PIN2 = "37"  # first two digits of a card password
DEMO_CHARGED_AMOUNT = "4821"  # won charged to the card for amount authentication
PIN_HASH = make_hash(DEMO_PIN2, "demo-d-5f1c9a")
AMOUNT_HASH = make_hash(DEMO_CHARGED_AMOUNT, "demo-amt-08be72")

CONSENT_PARAMS = {
    "merchant": "에이알에스 통신",
    "bank": "국민은행",
    "holder": "홍길동",
    "account_tail": "7890",
    "debit_day": "25",
    "amount": "12000",
}
# The demo points callback_url at its own loopback core (ars_engine.demo.LocalCore) unless a
# case gives one.
EVENT_PARAMS = {
    "event_name": "연말 고객 감사 이벤트",
}
# Nothing listens on the discard port: the mid-call webhook fails and the scenario goes on.
CORE_DOWN_URL = "http://127.0.0.1:9/ars/events"

SILENT_3 = ("", "", "")  # no key at any of the 3 attempts

DEMO_CASES: list[DemoCase] = [
    # -- type A: read the code ------------------------------------------------------------
    DemoCase("a_code_heard", "type_a.yaml", {"code": DEMO_CODE_4}, [""], "success",
             expected_result={"code_played": True}),
    DemoCase("a_code_repeated", "type_a.yaml", {"code": DEMO_CODE_4}, ["1", ""], "success",
             expected_result={"code_played": True}),
    # hangs up during the 2nd repeat: the code was already played once, so it still passes
    DemoCase("a_hangup_after_code", "type_a.yaml", {"code": DEMO_CODE_4}, ["1", "1"], "success",
             hangup_at=22.0, expected_result={"code_played": True}),
    DemoCase("a_hangup_before_code", "type_a.yaml", {"code": DEMO_CODE_4}, [], "callee_hangup",
             hangup_at=2.0, expected_result={"code_played": False}),
    # -- type B: press 5, then the code ---------------------------------------------------
    DemoCase("b_key_then_code", "type_b.yaml", {"code": DEMO_CODE_4}, ["5"], "success",
             expected_result={"code_played": True}),
    DemoCase("b_wrong_key", "type_b.yaml", {"code": DEMO_CODE_4}, ["1", "2", "9"], "failed",
             expected_result={"code_played": False, "reason": "wrong_key"}),
    DemoCase("b_no_key", "type_b.yaml", {"code": DEMO_CODE_4}, [*SILENT_3], "timeout",
             expected_result={"code_played": False, "reason": "no_input"}),
    DemoCase("b_hangup_before_code", "type_b.yaml", {"code": DEMO_CODE_4}, [], "callee_hangup",
             hangup_at=2.0, expected_result={"code_played": False}),
    # -- type C: enter the code shown on screen -------------------------------------------
    DemoCase("c_code_ok", "type_c.yaml", {"code": DEMO_CODE_6}, [DEMO_CODE_6], "success",
             expected_result={"verified": True}),
    DemoCase("c_wrong_then_ok", "type_c.yaml", {"code": DEMO_CODE_6}, ["111111", DEMO_CODE_6],
             "success", expected_result={"verified": True}),
    DemoCase("c_wrong_code", "type_c.yaml", {"code": DEMO_CODE_6},
             ["111111", "654321", "123465"], "failed",
             expected_result={"verified": False, "reason": "wrong_code"}),
    DemoCase("c_no_input", "type_c.yaml", {"code": DEMO_CODE_6}, [*SILENT_3], "timeout",
             expected_result={"verified": False, "reason": "no_input"}),
    # -- type D: first two digits of the card password (salted hash) ----------------------
    DemoCase("d_pin_ok", "type_d.yaml", {"pin_hash": PIN_HASH}, [DEMO_PIN2], "success",
             expected_result={"verified": True}),
    DemoCase("d_wrong_pin", "type_d.yaml", {"pin_hash": PIN_HASH}, ["12", "73", "00"], "failed",
             expected_result={"verified": False, "reason": "wrong_pin"}),
    DemoCase("d_no_input", "type_d.yaml", {"pin_hash": PIN_HASH}, [*SILENT_3], "timeout",
             expected_result={"verified": False, "reason": "no_input"}),
    # -- type E: recorded direct-debit consent --------------------------------------------
    DemoCase("e_agreed", "type_e.yaml", dict(CONSENT_PARAMS), ["1"], "success",
             expected_result={"agreed": True, "key": "1"}),
    DemoCase("e_refused", "type_e.yaml", dict(CONSENT_PARAMS), ["2"], "refused",
             expected_result={"agreed": False, "key": "2"}),
    DemoCase("e_no_answer", "type_e.yaml", dict(CONSENT_PARAMS), [*SILENT_3], "timeout",
             expected_result={"agreed": False, "reason": "no_input"}),
    DemoCase("e_hangup_during_consent", "type_e.yaml", dict(CONSENT_PARAMS), [], "callee_hangup",
             hangup_at=25.0, expected_result={"agreed": False, "reason": "callee_hangup"}),
    # -- type F: event marketing consent menu ---------------------------------------------
    # Results of a decision include notified/ticket, which depend on the core answering the
    # webhook, so those cases check the outcome only.
    DemoCase("f_event_agreed", "type_f_event_consent.yaml", dict(EVENT_PARAMS), ["1"], "success",
             expected_result={"notified": "yes"}),
    DemoCase("f_event_core_down", "type_f_event_consent.yaml",
             {**EVENT_PARAMS, "callback_url": CORE_DOWN_URL}, ["1"], "success",
             expected_result={"notified": "no"}),
    DemoCase("f_event_replay_then_decline", "type_f_event_consent.yaml", dict(EVENT_PARAMS),
             ["9", "2"], "refused"),
    DemoCase("f_event_agent_then_silence", "type_f_event_consent.yaml", dict(EVENT_PARAMS),
             ["0", "", ""], "timeout",
             expected_result={"consent": "none", "reason": "no_input"}),
    DemoCase("f_event_invalid_keys", "type_f_event_consent.yaml", dict(EVENT_PARAMS),
             ["5", "0", "7"], "failed",
             expected_result={"consent": "none", "reason": "invalid_key"}),
    # -- type F: amount authentication (salted hash of the charged amount) ----------------
    DemoCase("f_amount_ok", "type_f_amount_auth.yaml", {"amount_hash": AMOUNT_HASH},
             [DEMO_CHARGED_AMOUNT + "#"], "success",
             expected_result={"verified": True, "method": "amount"}),
    DemoCase("f_amount_short_then_ok", "type_f_amount_auth.yaml", {"amount_hash": AMOUNT_HASH},
             ["48#", DEMO_CHARGED_AMOUNT + "#"], "success",
             expected_result={"verified": True, "method": "amount"}),
    DemoCase("f_amount_wrong", "type_f_amount_auth.yaml", {"amount_hash": AMOUNT_HASH},
             ["1000#", "4812#", "9999#"], "failed",
             expected_result={"verified": False, "reason": "wrong_amount"}),
    DemoCase("f_amount_no_input", "type_f_amount_auth.yaml", {"amount_hash": AMOUNT_HASH},
             [*SILENT_3], "timeout",
             expected_result={"verified": False, "reason": "no_input"}),
]
