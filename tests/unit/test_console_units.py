"""The console's pure parts: password hashing and policy, CSRF tokens, language choice, the
``next`` redirect guard and the sign-in throttle."""

from __future__ import annotations

import pytest

from ars_engine.console import accounts
from ars_engine.console.app import THROTTLE_FAILURES, THROTTLE_WINDOW, LoginThrottle, safe_next
from ars_engine.console.i18n import MESSAGES, pick_lang, translate
from ars_engine.console.passwords import (
    WeakPassword,
    check_policy,
    hash_password,
    verify_password,
)


def test_a_password_verifies_and_a_wrong_one_does_not() -> None:
    stored = hash_password("correct horse 1")
    assert stored.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse 1", stored)
    assert not verify_password("correct horse 2", stored)
    assert hash_password("correct horse 1") != stored  # salted


@pytest.mark.parametrize("stored", ["", "plain", "scrypt$1$2$3", "bcrypt$a$b$c$d$e",
                                    "scrypt$x$8$1$AAAA$AAAA", "scrypt$16384$8$1$!!$AAAA"])
def test_a_malformed_stored_hash_never_verifies(stored: str) -> None:
    assert verify_password("anything", stored) is False


@pytest.mark.parametrize(("password", "rule"), [
    ("short1", "at least 10"), ("aaaaaaaaaaaa", "4 different"),
    ("xx-admin-xx-1", "user name"), ("a" * 300, "at most")])
def test_the_password_policy_names_the_rule(password: str, rule: str) -> None:
    with pytest.raises(WeakPassword, match=rule):
        check_policy(password, "admin")


def test_csrf_tokens_are_per_session_and_keyed() -> None:
    key = b"k" * 32
    token = accounts.csrf_token(key, "session-a")
    assert accounts.csrf_matches(key, "session-a", token)
    assert not accounts.csrf_matches(key, "session-b", token)
    assert not accounts.csrf_matches(b"x" * 32, "session-a", token)
    assert not accounts.csrf_matches(key, "session-a", "")


@pytest.mark.parametrize(("query", "cookie", "accept", "lang"), [
    (None, None, None, "ko"), ("en", None, None, "en"), (None, "en", "ko-KR", "en"),
    ("ko", "en", "en-US", "ko"), (None, None, "en-US,en;q=0.9", "en"),
    (None, None, "fr-FR,ko;q=0.5", "ko"), ("xx", "yy", "de", "ko")])
def test_language_choice(query: str | None, cookie: str | None, accept: str | None,
                         lang: str) -> None:
    assert pick_lang(query, cookie, accept) == lang


def test_every_message_has_both_languages() -> None:
    for key, (ko, en) in MESSAGES.items():
        assert ko.strip() and en.strip(), key
        assert ko.count("{") == en.count("{"), key  # the same placeholders
    assert translate("en", "live_status", active=2, queued=3) == "2 running, 3 queued"
    assert translate("ko", "no-such-key") == "no-such-key"


@pytest.mark.parametrize(("value", "target"), [
    ("/console/calls?state=failed", "/console/calls?state=failed"), (None, "/console/"),
    ("https://evil.example/console/", "/console/"), ("//evil.example/", "/console/"),
    ("/v1/calls", "/console/"), ("/console/\\\\evil", "/console/"), ("", "/console/")])
def test_next_stays_inside_the_console(value: str | None, target: str) -> None:
    assert safe_next(value) == target


def test_the_throttle_blocks_after_failures_and_forgets_with_time() -> None:
    now = [1000.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(THROTTLE_FAILURES - 1):
        throttle.failed("user:root", "addr:1")
    assert not throttle.blocked("user:root")
    throttle.failed("user:root", "addr:1")
    assert throttle.blocked("user:root") and throttle.blocked("addr:1")
    assert not throttle.blocked("user:other")
    now[0] += THROTTLE_WINDOW + 1
    assert not throttle.blocked("user:root")
    throttle.failed("user:x")
    throttle.succeeded("user:x")
    assert not throttle.blocked("user:x")
