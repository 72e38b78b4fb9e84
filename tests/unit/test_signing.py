"""Webhook signatures: the header format, each failure reason, tolerance boundaries, and that
no single-byte change to the body or the signature verifies."""

from __future__ import annotations

import ast
import hashlib
import hmac
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ars_engine.service import signing
from ars_engine.service.signing import (
    DEFAULT_TOLERANCE,
    HEADER,
    SignatureError,
    sign,
    verify,
)

SECRET = "whsec_0123456789abcdef"
OTHER_SECRET = "whsec_fedcba9876543210"
BODY = b'{"event":"call.completed","call_id":"c_123","outcome":"answered"}'
T = 1_700_000_000


def reference_mac(secret: str, timestamp: int, body: bytes) -> str:
    """The documented construction, written out independently of the module."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def test_known_answer_vector() -> None:
    # HMAC-SHA256(key=b"whsec_test", msg=b"1700000000.{}"), computed once with the hmac module
    # and pinned, so a change to the construction (separator, encoding, order) is caught.
    pinned = "35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
    assert hmac.new(b"whsec_test", b"1700000000.{}", hashlib.sha256).hexdigest() == pinned
    assert sign("whsec_test", b"{}", T) == f"t=1700000000,v1={pinned}"
    assert verify("whsec_test", f"t=1700000000,v1={pinned}", b"{}", now=T) == T


def test_sign_matches_the_reference_construction() -> None:
    assert sign(SECRET, BODY, T) == f"t={T},v1={reference_mac(SECRET, T, BODY)}"
    assert HEADER == "X-ARS-Signature"
    assert DEFAULT_TOLERANCE == 300


def test_secret_is_used_as_utf8_text() -> None:
    secret = "whsec_비밀"
    assert sign(secret, BODY, T).endswith(reference_mac(secret, T, BODY))


def test_verify_returns_the_timestamp() -> None:
    assert verify(SECRET, sign(SECRET, BODY, T), BODY, now=T + 10) == T


def test_verify_accepts_any_of_several_v1_entries_and_ignores_other_schemes() -> None:
    # During a rotation the sender signs with both secrets; either receiver secret verifies.
    old = sign(OTHER_SECRET, BODY, T).split(",")[1]
    new = sign(SECRET, BODY, T).split(",")[1]
    header = f"t={T}, v0=deadbeef, {old}, {new}, v2=whatever"
    assert verify(SECRET, header, BODY, now=T) == T
    assert verify(OTHER_SECRET, header, BODY, now=T) == T
    with pytest.raises(SignatureError) as info:
        verify("whsec_third", header, BODY, now=T)
    assert info.value.reason == "mismatch"


def test_order_of_items_does_not_matter() -> None:
    header = f"v1={reference_mac(SECRET, T, BODY)},t={T}"
    assert verify(SECRET, header, BODY, now=T) == T


GOOD_MAC = reference_mac(SECRET, T, BODY)


@pytest.mark.parametrize(("header", "reason"), [
    ("", "malformed"),
    ("   ", "malformed"),
    (f"v1={GOOD_MAC}", "malformed"),  # no timestamp
    (f"t={T}", "no_signature"),
    (f"t={T},v0={GOOD_MAC}", "no_signature"),  # only schemes we do not know
    (f"t={T},t={T},v1={GOOD_MAC}", "malformed"),
    (f"t=,v1={GOOD_MAC}", "malformed"),
    (f"t=-5,v1={GOOD_MAC}", "malformed"),
    (f"t=17e8,v1={GOOD_MAC}", "malformed"),
    (f"t=１７,v1={GOOD_MAC}", "malformed"),  # non-ASCII digits
    ("t=" + "9" * 5000 + f",v1={GOOD_MAC}", "malformed"),  # no int() of 5000 digits
    (f"t={T},v1={GOOD_MAC[:-1]}", "malformed"),  # 63 hex digits
    (f"t={T},v1={GOOD_MAC.upper()}", "malformed"),
    (f"t={T},v1=", "malformed"),
    (f"t={T};v1={GOOD_MAC}", "malformed"),
    (f"t={T},v1={GOOD_MAC},", "malformed"),  # an empty item
    (f"t={T},={GOOD_MAC}", "malformed"),
    (f"t={T},v1={reference_mac(OTHER_SECRET, T, BODY)}", "mismatch"),
    (f"t={T + 1},v1={GOOD_MAC}", "mismatch"),  # the timestamp is signed
    (f"t={T},v1={'0' * 64}", "mismatch"),
    (f"t={T - DEFAULT_TOLERANCE - 1},v1={reference_mac(SECRET, T - 301, BODY)}", "too_old"),
    (f"t={T + DEFAULT_TOLERANCE + 1},v1={reference_mac(SECRET, T + 301, BODY)}", "in_future"),
])
def test_each_failure_has_its_reason(header: str, reason: str) -> None:
    with pytest.raises(SignatureError) as info:
        verify(SECRET, header, BODY, now=T)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)
    # Messages are for people: they never repeat the secret or a signature.
    assert SECRET not in str(info.value)
    assert GOOD_MAC not in str(info.value)
    assert reason in signing.REASONS


def test_signature_is_checked_before_age() -> None:
    # A forged header with an old timestamp is a mismatch, not "too old": the age of a
    # delivery is only reported for genuine ones.
    header = f"t={T - 10_000},v1={'a' * 64}"
    with pytest.raises(SignatureError) as info:
        verify(SECRET, header, BODY, now=T)
    assert info.value.reason == "mismatch"


@pytest.mark.parametrize(("delta", "tolerance", "reason"), [
    (0, 300, None),
    (300, 300, None),  # exactly the tolerance: accepted
    (300.001, 300, "too_old"),
    (301, 300, "too_old"),
    (-300, 300, None),
    (-300.001, 300, "in_future"),
    (-301, 300, "in_future"),
    (59.5, 60, None),
    (61, 60, "too_old"),
    (0, 0, None),
    (0.5, 0, "too_old"),
    (86_400 * 365, 300, "too_old"),
])
def test_tolerance_boundaries(delta: float, tolerance: float, reason: str | None) -> None:
    header = sign(SECRET, BODY, T)
    if reason is None:
        assert verify(SECRET, header, BODY, now=T + delta, tolerance=tolerance) == T
    else:
        with pytest.raises(SignatureError) as info:
            verify(SECRET, header, BODY, now=T + delta, tolerance=tolerance)
        assert info.value.reason == reason


@pytest.mark.parametrize("tolerance", [-1, float("nan"), float("inf")])
def test_bad_tolerance_is_a_caller_error(tolerance: float) -> None:
    with pytest.raises(ValueError) as info:
        verify(SECRET, sign(SECRET, BODY, T), BODY, now=T, tolerance=tolerance)
    assert not isinstance(info.value, SignatureError)


def test_nan_now_is_a_caller_error_not_an_acceptance() -> None:
    with pytest.raises(ValueError):
        verify(SECRET, sign(SECRET, BODY, T), BODY, now=float("nan"))


@pytest.mark.parametrize("timestamp", [-1, True, 1.5])
def test_sign_refuses_bad_timestamps(timestamp: object) -> None:
    with pytest.raises(ValueError):
        sign(SECRET, BODY, timestamp)  # type: ignore[arg-type]


def test_empty_secret_and_text_body_are_refused() -> None:
    with pytest.raises(ValueError):
        sign("", BODY, T)
    with pytest.raises(TypeError):
        sign(SECRET, BODY.decode(), T)  # type: ignore[arg-type]


@given(st.binary(max_size=200), st.data())
def test_flipping_any_body_byte_fails(body: bytes, data: st.DataObject) -> None:
    header = sign(SECRET, body, T)
    assert verify(SECRET, header, body, now=T) == T
    if not body:
        altered = b"x"
    else:
        index = data.draw(st.integers(0, len(body) - 1))
        flip = data.draw(st.integers(1, 255))
        altered = body[:index] + bytes([body[index] ^ flip]) + body[index + 1:]
    with pytest.raises(SignatureError) as info:
        verify(SECRET, header, altered, now=T)
    assert info.value.reason == "mismatch"


@given(st.data())
def test_changing_any_signature_character_fails(data: st.DataObject) -> None:
    header = sign(SECRET, BODY, T)
    start = header.index("v1=") + 3
    index = data.draw(st.integers(start, len(header) - 1))
    replacement = data.draw(st.sampled_from("0123456789abcdefABCDEF=,;x ").filter(
        lambda ch: ch != header[index]))
    altered = header[:index] + replacement + header[index + 1:]
    with pytest.raises(SignatureError) as info:
        verify(SECRET, altered, BODY, now=T)
    assert info.value.reason in ("mismatch", "malformed")


@given(st.data())
def test_flipping_any_header_byte_fails(data: st.DataObject) -> None:
    header = sign(SECRET, BODY, T).encode("ascii")
    index = data.draw(st.integers(0, len(header) - 1))
    flip = data.draw(st.integers(1, 127))
    altered = header[:index] + bytes([header[index] ^ flip]) + header[index + 1:]
    with pytest.raises(SignatureError):
        verify(SECRET, altered.decode("ascii"), BODY, now=T, tolerance=10**12)


@given(st.text(max_size=120))
def test_arbitrary_headers_raise_only_signature_error(header: str) -> None:
    with pytest.raises(SignatureError) as info:
        verify(SECRET, header, BODY, now=T)
    assert info.value.reason in signing.REASONS


def test_module_is_standalone() -> None:
    # The verification service copies this file: standard library only, nothing from us.
    tree = ast.parse(Path(signing.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "hashlib", "hmac", "math"}
