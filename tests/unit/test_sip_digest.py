"""Digest authentication (ars_engine/telephony/sip/digest.py): the RFC worked examples as tables.

Expected responses are the published ones: RFC 2617 §3.5 (MD5, qop=auth), RFC 7616 §3.9.1
(MD5 and SHA-256 with the same inputs) and RFC 2069 §2.4 (no qop). RFC 2069 printed a wrong
response for its example (reported in the RFC Editor errata for RFC 2069); the value here is the
one the example's inputs give, which every implementation computes.
"""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ars_engine.errors import ProtocolError
from ars_engine.telephony.sip.digest import (
    DigestChallenge,
    authorization,
    new_cnonce,
    parse_challenge,
    parse_credentials,
    select_challenge,
    verify,
)

RFC2617_CHALLENGE = ('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                     'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
                     'opaque="5ccc069c403ebaf9f0171e9517f40e41"')
RFC7616_CHALLENGE = ('Digest realm="http-auth@example.org", qop="auth, auth-int", '
                     'algorithm={alg}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
                     'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"')
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"

# (challenge, password, cnonce, expected response) — method GET, uri /dir/index.html, nc 1,
# user Mufasa in every published example.
RFC_EXAMPLES = [
    pytest.param(RFC2617_CHALLENGE, "Circle Of Life", "0a4f113b",
                 "6629fae49393a05397450978507c4ef1", id="rfc2617-3.5-md5-auth"),
    pytest.param(RFC7616_CHALLENGE.format(alg="MD5"), "Circle of Life", RFC7616_CNONCE,
                 "8ca523f5e9506fed4657c9700eebdbec", id="rfc7616-3.9.1-md5-auth"),
    pytest.param(RFC7616_CHALLENGE.format(alg="SHA-256"), "Circle of Life", RFC7616_CNONCE,
                 "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
                 id="rfc7616-3.9.1-sha256-auth"),
    pytest.param('Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
                 'opaque="5ccc069c403ebaf9f0171e9517f40e41"', "CircleOfLife", "unused",
                 "1949323746fe6a43ef61f9606e7febea", id="rfc2069-2.4-md5-no-qop"),
]


def params_of(value: str) -> dict[str, str]:
    assert value.startswith("Digest ")
    return {m[1]: m[2] if m[2] is not None else m[3] for m in
            re.finditer(r'([a-z]+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]+))', value)}


@pytest.mark.parametrize(("challenge", "password", "cnonce", "expected"), RFC_EXAMPLES)
def test_rfc_examples_give_the_published_response(challenge: str, password: str, cnonce: str,
                                                  expected: str) -> None:
    value = authorization(parse_challenge(challenge), "GET", "/dir/index.html", "Mufasa",
                          password, cnonce=cnonce, nc=1)
    params = params_of(value)
    assert params["response"] == expected
    assert verify(value, "GET", password)
    assert not verify(value, "GET", password + "x")
    assert not verify(value, "POST", password)


def test_qop_auth_header_carries_every_parameter_rfc7616_lists() -> None:
    value = authorization(parse_challenge(RFC7616_CHALLENGE.format(alg="SHA-256")), "GET",
                          "/dir/index.html", "Mufasa", "Circle of Life", cnonce=RFC7616_CNONCE,
                          nc=1)
    assert params_of(value) == {
        "username": "Mufasa", "realm": "http-auth@example.org",
        "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "uri": "/dir/index.html",
        "response": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        "algorithm": "SHA-256", "cnonce": RFC7616_CNONCE,
        "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS", "qop": "auth", "nc": "00000001"}
    assert "qop=auth," in value and "nc=00000001" in value  # unquoted tokens (RFC 7616 §3.4)


def test_rfc2069_form_has_no_qop_cnonce_or_nc() -> None:
    value = authorization(parse_challenge('Digest realm="r", nonce="n"'), "REGISTER",
                          "sip:example.com", "alice", "secret", cnonce="c")
    assert set(params_of(value)) == {"username", "realm", "nonce", "uri", "response", "algorithm"}


def test_parse_challenge_fields() -> None:
    c = parse_challenge('Digest realm="atlanta.com", domain="sip:ss1.carrier.com", qop="auth", '
                        'nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=FALSE, '
                        'algorithm=MD5')
    assert c == DigestChallenge(realm="atlanta.com", nonce="f84f1cec41e6cbe5aea9c8e88d359",
                                algorithm="MD5", qop=("auth",), opaque="", stale=False)
    c = parse_challenge('digest nonce="n",realm="r",stale=true,algorithm=sha-256-SESS,qop=auth')
    assert (c.algorithm, c.stale, c.qop, c.opaque) == ("SHA-256-sess", True, ("auth",), None)
    assert c.supported


@pytest.mark.parametrize("value", [
    'Basic realm="r"', "Digest", 'Digest realm="r"', 'Digest nonce="n"',
    'Digest realm="r", nonce="n", realm="s"', 'Digest realm="r" nonce="n"',
    'Digest realm="r, nonce="n"', "", 'Digest realm="r", nonce="n",, x',
])
def test_malformed_challenges_raise(value: str) -> None:
    with pytest.raises(ProtocolError):
        parse_challenge(value)


@pytest.mark.parametrize("algorithm", ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess",
                                       "SHA-512-256", "SHA-512-256-sess"])
@pytest.mark.parametrize("qop", ['qop="auth"', 'qop="auth-int"', ""])
def test_every_algorithm_and_qop_round_trips_through_verify(algorithm: str, qop: str) -> None:
    challenge = parse_challenge(f'Digest realm="sip.example.net", nonce="abc", '
                                f'algorithm={algorithm}{", " + qop if qop else ""}')
    body = b"v=0\r\n"
    value = authorization(challenge, "INVITE", "sip:bob@example.net", "alice", "pw",
                          cnonce=new_cnonce(), nc=3, body=body)
    creds = parse_credentials(value)
    assert creds.algorithm == algorithm and creds.username == "alice"
    assert verify(creds, "INVITE", "pw", body=body)
    assert not verify(creds, "INVITE", "pw2", body=body)
    if "auth-int" in qop:
        assert not verify(creds, "INVITE", "pw", body=b"v=1\r\n")  # the body is protected


def test_sess_variants_differ_from_plain_ones() -> None:
    def response(alg: str) -> str:
        c = parse_challenge(f'Digest realm="r", nonce="n", qop="auth", algorithm={alg}')
        return params_of(authorization(c, "INVITE", "sip:x", "u", "p", cnonce="c"))["response"]
    assert response("MD5") != response("MD5-sess")
    assert response("SHA-256") != response("SHA-256-sess")
    assert len(response("SHA-256")) == 64 and len(response("MD5")) == 32


def test_nc_is_eight_hex_digits() -> None:
    c = parse_challenge('Digest realm="r", nonce="n", qop="auth"')
    assert params_of(authorization(c, "BYE", "sip:x", "u", "p", cnonce="c", nc=255))["nc"] == (
        "000000ff")


def test_quotes_in_values_are_escaped_and_verify() -> None:
    c = parse_challenge('Digest realm="a \\"b\\" c", nonce="n", qop="auth"')
    assert c.realm == 'a "b" c'
    value = authorization(c, "INVITE", "sip:x", 'us"er', "p", cnonce="c")
    assert 'username="us\\"er"' in value
    assert parse_credentials(value).username == 'us"er' and verify(value, "INVITE", "p")


def test_unsupported_challenges_are_refused_without_the_password() -> None:
    for text in ('Digest realm="r", nonce="n", algorithm=SHA-1',
                 'Digest realm="r", nonce="n", qop="auth-conf"'):
        challenge = parse_challenge(text)
        assert not challenge.supported
        with pytest.raises(ProtocolError) as info:
            authorization(challenge, "INVITE", "sip:x", "u", "hunter2-secret", cnonce="c")
        assert "hunter2-secret" not in str(info.value)


def test_select_challenge_takes_the_topmost_supported_one() -> None:
    values = ['Digest realm="r", nonce="1", algorithm=SHA-1', 'Basic realm="r"',
              'Digest realm="r", nonce="2", algorithm=SHA-256, qop="auth"',
              'Digest realm="r", nonce="3", algorithm=MD5, qop="auth"']
    selected = select_challenge(values)
    assert selected is not None and (selected.nonce, selected.algorithm) == ("2", "SHA-256")
    assert select_challenge(['Basic realm="r"']) is None


def test_credentials_parse_and_reject_malformed_ones() -> None:
    creds = parse_credentials('Digest username="u", realm="r", nonce="n", uri="sip:x", '
                              'response="abc", qop=auth, nc=0000000A, cnonce="c"')
    assert (creds.qop, creds.nc, creds.cnonce) == ("auth", "0000000A", "c")
    for bad in ('Digest username="u"', 'NoOneKnowsThisScheme opaque-data=here',
                'Digest username="u", realm="r", nonce="n", uri="x", response="a", qop=auth',
                'Digest username="u", realm="r", nonce="n", uri="x", response="a", qop=auth, '
                'nc=1, cnonce="c"'):
        with pytest.raises(ProtocolError):
            parse_credentials(bad)


def test_reprs_hold_no_secrets() -> None:
    c = parse_challenge(RFC2617_CHALLENGE)
    assert repr(c) == "<DigestChallenge MD5 realm='testrealm@host.com' qop=auth,auth-int>"
    value = authorization(c, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", cnonce="x")
    creds = parse_credentials(value)
    assert "Circle" not in repr(creds) and creds.response not in repr(creds)


def test_new_cnonce_is_fresh_hex() -> None:
    a, b = new_cnonce(), new_cnonce()
    assert a != b and len(a) == 32 and int(a, 16) >= 0


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_parsers_raise_only_protocol_error(text: str) -> None:
    for parse in (parse_challenge, parse_credentials):
        with contextlib.suppress(ProtocolError):
            parse(text)
    with contextlib.suppress(ProtocolError):
        parse_challenge("Digest " + text)
