"""Destination policy: normalisation to E.164, the Korean numbering plan, and tenant rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ars_engine.errors import DestinationError, FieldError
from ars_engine.service.policy import (
    Destination,
    DestinationRules,
    NumberKind,
    check_destination,
    classify,
    mask_number,
    normalize_e164,
)

MOBILE = "+821012345678"
K = NumberKind

# raw input → (E.164, kind) or the error code. Every row is one behaviour of the plan.
NUMBERS: list[tuple[str, str | None, NumberKind | None, str | None]] = [
    # the forms people write a mobile number in
    ("010-1234-5678", MOBILE, K.MOBILE, None),
    ("01012345678", MOBILE, K.MOBILE, None),
    ("010 1234 5678", MOBILE, K.MOBILE, None),
    ("010.1234.5678", MOBILE, K.MOBILE, None),
    (" 010-1234-5678\t", MOBILE, K.MOBILE, None),
    ("+82 10-1234-5678", MOBILE, K.MOBILE, None),
    ("+821012345678", MOBILE, K.MOBILE, None),
    ("+82 010-1234-5678", MOBILE, K.MOBILE, None),  # trunk 0 kept after +82
    ("+82 (0)10 1234 5678", MOBILE, K.MOBILE, None),
    ("00821012345678", MOBILE, K.MOBILE, None),  # 00 + 82, not carrier 008 + 2…
    ("008 82 10 1234 5678", MOBILE, K.MOBILE, None),  # carrier 008 + 82
    ("001-82-10-1234-5678", MOBILE, K.MOBILE, None),
    # legacy mobile ranges, 7 or 8 digits
    ("011-234-5678", "+82112345678", K.MOBILE, None),
    ("016-1234-5678", "+821612345678", K.MOBILE, None),
    ("017-345-6789", "+82173456789", K.MOBILE, None),
    ("019-9876-5432", "+821998765432", K.MOBILE, None),
    # landlines: Seoul and the other areas, 7 or 8 digit subscriber numbers
    ("(02) 312-3456", "+8223123456", K.LANDLINE, None),
    ("02-2345-6789", "+82223456789", K.LANDLINE, None),
    ("031-234-5678", "+82312345678", K.LANDLINE, None),
    ("033 9876 5432", "+823398765432", K.LANDLINE, None),
    ("044-300-1234", "+82443001234", K.LANDLINE, None),
    ("051-2345-6789", "+825123456789", K.LANDLINE, None),
    ("064-712-3456", "+82647123456", K.LANDLINE, None),
    ("+82 2 312 3456", "+8223123456", K.LANDLINE, None),
    # VoIP, premium, service numbers
    ("070-1234-5678", "+827012345678", K.VOIP, None),
    ("060-700-1234", "+82607001234", K.PREMIUM, None),
    ("060-7000-1234", "+826070001234", K.PREMIUM, None),
    ("080-123-4567", "+82801234567", K.SERVICE, None),
    ("0505-123-4567", "+825051234567", K.SERVICE, None),
    ("0504-1234-5678", "+8250412345678", K.SERVICE, None),
    ("030-1234-5678", "+823012345678", K.SERVICE, None),
    ("+82 1588-1234", "+8215881234", K.SERVICE, None),
    ("+82 1644 1234", "+8216441234", K.SERVICE, None),
    ("+82 1800-1234", "+8218001234", K.SERVICE, None),
    # special short numbers
    ("+82 112", "+82112", K.SHORT, None),
    ("+82119", "+82119", K.SHORT, None),
    ("+82 1330", "+821330", K.SHORT, None),
    # +82 numbers outside the known ranges, or a known prefix with the wrong length
    ("010-123-4567", "+82101234567", K.UNKNOWN_KR, None),
    ("010-1234-56789", "+8210123456789", K.UNKNOWN_KR, None),
    ("02-012-3456", "+8220123456", K.UNKNOWN_KR, None),  # exchange starting with 0
    ("02-123-456", "+822123456", K.UNKNOWN_KR, None),  # 6-digit subscriber number
    ("031-112-3456", "+82311123456", K.UNKNOWN_KR, None),  # exchange starting with 1
    ("040-123-4567", "+82401234567", K.UNKNOWN_KR, None),
    ("070-123-4567", "+82701234567", K.UNKNOWN_KR, None),
    ("080-12-3456", "+8280123456", K.UNKNOWN_KR, None),
    ("+82 1234 5678", "+8212345678", K.UNKNOWN_KR, None),
    ("+82 1588 123", "+821588123", K.UNKNOWN_KR, None),
    ("+82 9 1234 5678", "+82912345678", K.UNKNOWN_KR, None),
    # other countries
    ("+1 212 555 0100", "+12125550100", K.INTERNATIONAL, None),
    ("001 1 212 555 0100", "+12125550100", K.INTERNATIONAL, None),
    ("002 81 3 1234 5678", "+81312345678", K.INTERNATIONAL, None),
    ("00700 44 20 7946 0958", "+442079460958", K.INTERNATIONAL, None),
    ("+44 (0) 20 7946 0958", "+4402079460958", K.INTERNATIONAL, None),  # trunk kept: not ours
    ("+683 4002", "+6834002", K.INTERNATIONAL, None),  # shortest in service (Niue)
    # refused outright
    ("", None, None, "invalid_number"),
    ("  - ", None, None, "invalid_number"),
    ("010-1234-567a", None, None, "invalid_number"),
    ("tel:+821012345678", None, None, "invalid_number"),
    ("010-1234-5678 ext 9", None, None, "invalid_number"),
    ("*123#", None, None, "invalid_number"),
    ("010#1234", None, None, "invalid_number"),
    ("010+1234+5678", None, None, "invalid_number"),
    ("++821012345678", None, None, "invalid_number"),
    ("０１０１２３４５６７８", None, None, "invalid_number"),  # fullwidth digits
    ("1588-1234", None, None, "invalid_number"),  # no leading 0 or +
    ("112", None, None, "invalid_number"),
    ("21012345678", None, None, "invalid_number"),
    ("+", None, None, "invalid_number"),
    ("00", None, None, "invalid_number"),
    ("0", None, None, "invalid_number"),
    ("02", None, None, "invalid_number"),
    ("+0 123 4567", None, None, "invalid_number"),  # no country code starts with 0
    ("+82 00 1234 5678", None, None, "invalid_number"),
    ("+1 234 56", None, None, "invalid_number"),  # 6 digits: too short
    ("+1234567890123456", None, None, "invalid_number"),  # 16 digits
    ("010-1234-5678-1234", None, None, "invalid_number"),  # 16 digits once +82
]


@pytest.mark.parametrize(("raw", "e164", "kind", "code"), NUMBERS)
def test_numbers_normalise_and_classify_per_the_plan(
    raw: str, e164: str | None, kind: NumberKind | None, code: str | None
) -> None:
    if code is not None:
        with pytest.raises(DestinationError) as info:
            normalize_e164(raw)
        assert info.value.code == code
        assert info.value.field == "to"
        return
    assert normalize_e164(raw) == e164
    assert e164 is not None
    assert classify(e164) is kind


def test_numbers_table_is_large_and_covers_every_kind() -> None:
    assert len(NUMBERS) >= 40
    assert {kind for _, _, kind, _ in NUMBERS if kind} == set(NumberKind)


@pytest.mark.parametrize(("raw", "words"), [
    ("", "empty"),
    ("010-1234-567a", "letters"),
    ("*123#", "'*'"),
    ("1588-1234", "+82"),
    ("21012345678", "start with 0"),
    ("+1 234 56", "too short"),
    ("+1234567890123456", "15"),
    ("010+1234", "'+'"),
    ("０１０１２３４５６７８", "non-ASCII digits"),
])
def test_invalid_number_message_says_what_is_wrong(raw: str, words: str) -> None:
    with pytest.raises(DestinationError) as info:
        normalize_e164(raw, field="calls[3].to")
    assert words in info.value.message
    assert info.value.field == "calls[3].to"
    assert str(info.value).startswith("calls[3].to: ")


@pytest.mark.parametrize("raw", ["010-1234-567a", "+1234567890123456", "010-1234-5678 ext 9"])
def test_invalid_number_message_never_repeats_the_number(raw: str) -> None:
    with pytest.raises(DestinationError) as info:
        normalize_e164(raw)
    assert "1234" not in str(info.value)


def test_default_country_applies_to_national_numbers() -> None:
    assert normalize_e164("0301234567", default_country="49") == "+49301234567"
    with pytest.raises(ValueError):
        normalize_e164("0301234567", default_country="+49")


def test_classify_rejects_what_is_not_e164() -> None:
    for bad in ("", "+", "821012345678", "+82-10", "+８２"):
        with pytest.raises(ValueError):
            classify(bad)


PHONEY = st.text(alphabet="0123456789+-(). #*a０\t", max_size=24)


@given(st.text() | PHONEY)
def test_normalize_raises_only_destination_error(raw: str) -> None:
    try:
        result = normalize_e164(raw)
    except DestinationError as exc:
        assert exc.code == "invalid_number"
    else:
        assert result.startswith("+") and result[1:].isdigit() and result[1:].isascii()
        assert len(result) - 1 <= 15


@given(st.text() | PHONEY)
def test_normalize_is_idempotent_on_its_output(raw: str) -> None:
    try:
        once = normalize_e164(raw)
    except DestinationError:
        return
    assert normalize_e164(once) == once
    classify(once)  # every output can be classified


@given(st.integers(0, 99_999_999),
       st.sampled_from(["{a}-{b}-{c}", "{a}{b}{c}", "{a} {b} {c}", "+82 {a1}-{b}-{c}",
                        "+82{a1}{b}{c}", "0082{a1}{b}{c}", "+82 ({a}) {b} {c}",
                        "001 82 {a1} {b}{c}"]))
def test_every_way_of_writing_a_mobile_number_gives_the_same_e164(n: int, form: str) -> None:
    digits = f"{n:08d}"
    raw = form.format(a="010", a1="10", b=digits[:4], c=digits[4:])
    assert normalize_e164(raw) == "+8210" + digits
    assert classify("+8210" + digits) is NumberKind.MOBILE


# -- tenant rules ----------------------------------------------------------------------------------
DEFAULT = DestinationRules()
INTL = DestinationRules(allow_international=True)
PREMIUM = DestinationRules(allow_premium=True)
FREEPHONE = DestinationRules(allowed_prefixes=("+8280",))
BROAD_ONE = DestinationRules(allowed_prefixes=("+821",))
EXACT_114 = DestinationRules(allowed_prefixes=("+82114",))
NO_MOBILE = DestinationRules(blocked_prefixes=("+8210",), allowed_prefixes=("+8210",))
BLOCK_US = DestinationRules(allow_international=True, blocked_prefixes=("+1",))
US_BY_PREFIX = DestinationRules(allowed_prefixes=("+1",))
AREA_40 = DestinationRules(allowed_prefixes=("+8240",))

DECISIONS: list[tuple[str, DestinationRules, str | None]] = [
    ("010-1234-5678", DEFAULT, None),
    ("02-312-3456", DEFAULT, None),
    ("070-1234-5678", DEFAULT, None),
    ("011-234-5678", DEFAULT, None),
    ("+1 212 555 0100", DEFAULT, "international_not_allowed"),
    ("+1 212 555 0100", INTL, None),
    ("+1 212 555 0100", US_BY_PREFIX, None),  # an allowed prefix overrides the kind
    ("+44 20 7946 0958", US_BY_PREFIX, "international_not_allowed"),
    ("+1 212 555 0100", BLOCK_US, "blocked_prefix"),  # blocked wins over allow_international
    ("+44 20 7946 0958", BLOCK_US, None),
    ("060-700-1234", DEFAULT, "premium_not_allowed"),
    ("060-700-1234", INTL, "premium_not_allowed"),
    ("060-700-1234", PREMIUM, None),
    ("080-123-4567", DEFAULT, "service_number_not_allowed"),
    ("080-123-4567", FREEPHONE, None),
    ("0505-123-4567", FREEPHONE, "service_number_not_allowed"),
    ("+82 1588 1234", DEFAULT, "service_number_not_allowed"),
    ("+82 1588 1234", BROAD_ONE, None),
    ("+82 112", DEFAULT, "short_number_not_allowed"),
    ("+82 112", BROAD_ONE, "short_number_not_allowed"),  # a broad prefix never unlocks 112
    ("+82 114", EXACT_114, None),
    ("+82 112", EXACT_114, "short_number_not_allowed"),
    ("010-123-4567", DEFAULT, "not_a_korean_range"),
    ("040-123-4567", DEFAULT, "not_a_korean_range"),
    ("040-123-4567", AREA_40, None),
    ("010-1234-5678", NO_MOBILE, "blocked_prefix"),  # blocked wins over allowed
    ("02-312-3456", NO_MOBILE, None),
    ("010-1234-567a", DEFAULT, "invalid_number"),
    ("010-1234-567a", INTL, "invalid_number"),
]


@pytest.mark.parametrize(("raw", "rules", "code"), DECISIONS)
def test_check_destination_applies_the_rules(
    raw: str, rules: DestinationRules, code: str | None
) -> None:
    if code is None:
        destination = check_destination(raw, rules)
        assert destination.e164 == normalize_e164(raw)
        assert destination.kind is classify(destination.e164)
    else:
        with pytest.raises(DestinationError) as info:
            check_destination(raw, rules, field="calls[0].to")
        assert info.value.code == code
        assert info.value.field == "calls[0].to"


@pytest.mark.parametrize(("raw", "rules", "national"), [
    ("+82 10 1234 5678", DEFAULT, "01012345678"),
    ("(02) 312-3456", DEFAULT, "023123456"),
    ("070-1234-5678", DEFAULT, "07012345678"),
    ("+82 1588-1234", BROAD_ONE, "15881234"),  # dialled without a trunk 0
    ("+82 114", EXACT_114, "114"),
    ("080-123-4567", FREEPHONE, "0801234567"),
    ("+1 212 555 0100", INTL, "12125550100"),
])
def test_destination_national_form(raw: str, rules: DestinationRules, national: str) -> None:
    assert check_destination(raw, rules).national == national


def test_destination_repr_masks_the_number() -> None:
    destination = check_destination("010-1234-5678", DEFAULT)
    assert destination == Destination(MOBILE, NumberKind.MOBILE, "01012345678")
    assert repr(destination) == "Destination(+8210****5678, MOBILE)"


@pytest.mark.parametrize(("e164", "masked"), [
    ("+821012345678", "+8210****5678"),
    ("+82112345678", "+8211***5678"),
    ("+8223123456", "+822***3456"),
    ("+82312345678", "+8231***5678"),
    ("+825051234567", "+82505***4567"),
    ("+8215881234", "+8215881234"),  # a public representative number: nothing to hide
    ("+82112", "+82112"),
    ("+82912345678", "+82*****5678"),  # unknown range: only the country code is kept
    ("+12125550100", "+1******0100"),
    ("+442079460958", "+44******0958"),
    ("+3531234567", "+353***4567"),  # 3-digit country code
    ("010-1234-5678", "*************"),  # not E.164: all hidden, never an exception
    ("", ""),
])
def test_mask_number(e164: str, masked: str) -> None:
    assert mask_number(e164) == masked
    assert len(mask_number(e164)) == len(e164)


# -- rules from JSON -------------------------------------------------------------------------------
def test_rules_from_json_reads_every_field_and_round_trips() -> None:
    data = {"allow_international": True, "allow_premium": False,
            "allowed_prefixes": ["+8280", "+821588"], "blocked_prefixes": ["+8260"]}
    rules = DestinationRules.from_json(data)
    assert rules == DestinationRules(True, False, ("+8280", "+821588"), ("+8260",))
    assert rules.as_json() == data
    assert DestinationRules.from_json(rules.as_json()) == rules


def test_rules_from_json_defaults() -> None:
    assert DestinationRules.from_json({}) == DEFAULT
    assert DestinationRules.from_json(None) == DEFAULT


@pytest.mark.parametrize(("data", "field", "code"), [
    ([], "destination_rules", "invalid_type"),
    ("+82", "destination_rules", "invalid_type"),
    ({"allow_international": "yes"}, "destination_rules.allow_international", "invalid_type"),
    ({"allow_premium": 1}, "destination_rules.allow_premium", "invalid_type"),
    ({"allowed_prefixes": "+8280"}, "destination_rules.allowed_prefixes", "invalid_type"),
    ({"allowed_prefixes": ["+8280", "8280"]}, "destination_rules.allowed_prefixes[1]",
     "invalid_prefix"),
    ({"allowed_prefixes": ["+8280", 8280]}, "destination_rules.allowed_prefixes[1]",
     "invalid_type"),
    ({"blocked_prefixes": ["+82 60"]}, "destination_rules.blocked_prefixes[0]",
     "invalid_prefix"),
    ({"blocked_prefixes": ["+"]}, "destination_rules.blocked_prefixes[0]", "invalid_prefix"),
    ({"blocked_prefixes": ["+082"]}, "destination_rules.blocked_prefixes[0]", "invalid_prefix"),
    ({"blocked_prefixes": ["+1234567890123456"]}, "destination_rules.blocked_prefixes[0]",
     "invalid_prefix"),
    ({"allow_everything": True}, "destination_rules.allow_everything", "unknown_field"),
])
def test_rules_from_json_names_the_bad_member(data: object, field: str, code: str) -> None:
    with pytest.raises(FieldError) as info:
        DestinationRules.from_json(data)
    assert (info.value.field, info.value.code) == (field, code)


def test_rules_from_json_uses_the_callers_field_name() -> None:
    with pytest.raises(FieldError) as info:
        DestinationRules.from_json({"allowed_prefixes": ["x"]}, field="tenant.rules")
    assert info.value.field == "tenant.rules.allowed_prefixes[0]"


def test_rules_built_in_code_are_checked_too() -> None:
    with pytest.raises(FieldError):
        DestinationRules(allowed_prefixes=("+82 80",))
    assert DestinationRules(blocked_prefixes=["+8260"]).blocked_prefixes == ("+8260",)  # type: ignore[arg-type]
