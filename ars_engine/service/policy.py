"""Destination policy: which numbers a tenant may call (pure functions, one table each).

DESIGN: numbers are normalised to E.164; by default only Korean mobile, landline and VoIP ranges
are called; premium-rate and international numbers are refused unless the tenant is allowed.

The Korean numbering plan as used here (national significant number = the digits after +82,
i.e. the national number without its trunk ``0``):

=============================  =================================  ===============
national form                  meaning                            kind
=============================  =================================  ===============
010 + 8 digits                 mobile                             MOBILE
011/016/017/018/019 + 7–8      legacy mobile (pre-010 ranges)     MOBILE
02 + 7–8 (not 0/1 first)       Seoul                              LANDLINE
031–033, 041–044, 051–055,     other areas                        LANDLINE
061–064 + 7–8 (not 0/1 first)
070 + 8 digits                 VoIP                               VOIP
060 + 7–8                      premium-rate information services  PREMIUM
080 + 7–8                      free phone                         SERVICE
050x + 7–8                     personal / virtual numbers         SERVICE
030 + 7–8                      personal numbers (old range)       SERVICE
15xx/16xx/18xx + 4 (8 digits)  nationwide representative numbers  SERVICE
1xx, 1xxx (3–4 digits)         special numbers: 112, 119, 114…    SHORT
=============================  =================================  ===============

Any other +82 number, or a known prefix with the wrong length, is UNKNOWN_KR; any other country
is INTERNATIONAL. Phone numbers are personal data: messages never repeat the number, and logs
use :func:`mask_number`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import DestinationError, FieldError

__all__ = [
    "Destination",
    "DestinationRules",
    "NumberKind",
    "check_destination",
    "classify",
    "mask_number",
    "normalize_e164",
]

KOREA = "82"
E164_MAX_DIGITS = 15  # ITU-T E.164 §6: at most 15 digits, country code included
# The shortest Korean number worth classifying is a 3-digit special number (+82 112).
MIN_KOREAN_NSN_DIGITS = 3
# The shortest numbers in service anywhere are 4-digit subscriber numbers behind a 3-digit
# country code (Niue +683, Tokelau +690): anything shorter is a typo, not a destination.
MIN_INTERNATIONAL_DIGITS = 7

# Korean international access codes: 001 (KT), 002 (LG U+), 005, 006, 008 (carrier codes), 00700
# (SK Telink), and a bare 00. The forms overlap ("0081…" is 008 + 1… or 00 + 81…) and digits
# alone cannot tell them apart, so Korean dialling practice wins: a carrier code is read first.
# The one exception is "0082…", read as 00 + 82: a Korean number written with its country code
# is far more common here than Egypt/South Africa through 008 ("+20…"/"+27…" are unambiguous).
# Foreign numbers are best written with "+".
_INTERNATIONAL_PREFIXES = ("0082", "00700", "001", "002", "005", "006", "008", "00")
_SEPARATORS = frozenset(" -.()")
_DIGITS = frozenset("0123456789")

_LANDLINE_AREAS = frozenset(
    {"31", "32", "33", "41", "42", "43", "44", "51", "52", "53", "54", "55", "61", "62", "63", "64"}
)
_LEGACY_MOBILE = frozenset({"11", "16", "17", "18", "19"})
_REPRESENTATIVE = frozenset({"15", "16", "18"})  # 15xx-xxxx, 16xx-xxxx, 18xx-xxxx

# ITU-T E.164 country codes are 1, 2 or 3 digits; these are the ones with 1 or 2 (every other
# code is 3 digits long). Used only to find what to keep when masking a foreign number.
_ONE_DIGIT_CC = frozenset({"1", "7"})
_TWO_DIGIT_CC = frozenset({
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
    "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
    "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
})

_PREFIX_RE = re.compile(r"\+[1-9][0-9]{0,14}")


class NumberKind(enum.Enum):
    """What a number reaches, as far as the numbering plan tells."""

    MOBILE = "mobile"
    LANDLINE = "landline"
    VOIP = "voip"
    PREMIUM = "premium"
    SERVICE = "service"
    SHORT = "short"
    INTERNATIONAL = "international"
    UNKNOWN_KR = "unknown_kr"


# -- normalisation ---------------------------------------------------------------------------------
def normalize_e164(raw: str, *, field: str = "to", default_country: str = "82") -> str:
    """A phone number as written by a person → E.164 (``+821012345678``).

    Spaces, hyphens, dots and parentheses are dropped. ``+…`` is international; ``00``/``001``/
    ``002``/``005``/``006``/``008``/``00700`` are international access prefixes read as ``+``;
    any other number starting with ``0`` is national: its trunk ``0`` is replaced by
    ``+<default_country>``. A trunk ``0`` written after ``+82`` (``+82 (0)10…``) is dropped too.
    Anything else raises ``DestinationError(field, "invalid_number", …)`` saying what is wrong;
    Korean special and representative numbers (112, 1588-xxxx) must be written with ``+82``.
    ``00`` followed by 1, 2, 5, 6 or 8 is read as a Korean carrier code (``001 1 212…``), except
    ``0082…`` (Korea): write foreign numbers with ``+`` to avoid the ambiguity.
    The result is a fixed point: normalising it again returns it unchanged.
    """
    if not isinstance(raw, str):
        raise DestinationError(field, "invalid_number", "the number must be a string")
    if not default_country or not set(default_country) <= _DIGITS or default_country[0] == "0":
        raise ValueError("default_country must be a country code (digits, not starting with 0)")
    compact = "".join(ch for ch in raw if not (ch in _SEPARATORS or ch.isspace()))
    if not compact:
        raise DestinationError(field, "invalid_number", "the number is empty")
    _check_characters(compact, field)
    if compact.startswith("+"):
        digits = compact[1:]
        if not digits:
            raise DestinationError(field, "invalid_number", "no digits after '+'")
    elif compact.startswith("00"):
        prefix = next(p for p in _INTERNATIONAL_PREFIXES if compact.startswith(p))
        # "0082" keeps its "82": only the access code "00" is dropped.
        digits = compact[2:] if prefix == "0082" else compact[len(prefix):]
        if not digits:
            raise DestinationError(field, "invalid_number",
                                   "no digits after the international prefix")
    elif compact.startswith("0"):
        digits = default_country + compact[1:]
    elif compact.startswith("1"):
        raise DestinationError(field, "invalid_number",
                               "the number must start with 0 (national) or + (international); "
                               "write Korean special and representative numbers with +82")
    else:
        raise DestinationError(field, "invalid_number",
                               "the number must start with 0 (national) or + (international)")
    if digits.startswith("0"):
        raise DestinationError(field, "invalid_number", "a country code cannot start with 0")
    if digits.startswith(KOREA) and digits[2:3] == "0":
        # "+82 010…": people keep the trunk 0 after the country code; one 0, never more, as no
        # Korean number starts with 0 after it (so the result stays a fixed point).
        digits = KOREA + digits[3:]
        if digits[2:3] == "0":
            raise DestinationError(field, "invalid_number",
                                   "a Korean number cannot start with 00 after +82")
    _check_length(digits, field)
    return "+" + digits


def _check_characters(compact: str, field: str) -> None:
    for index, ch in enumerate(compact):
        if ch in _DIGITS or (ch == "+" and index == 0):
            continue
        if ch == "+":
            raise DestinationError(field, "invalid_number", "'+' may only start the number")
        if ch.isalpha():
            # Not repeated: a letter may be a sign that something else (a code, a name) was
            # pasted into the number field.
            raise DestinationError(field, "invalid_number", "the number contains letters")
        if ch.isdigit():  # a digit, but not ASCII: fullwidth ０, Arabic-Indic ٣…
            raise DestinationError(field, "invalid_number",
                                   "the number contains non-ASCII digits")
        raise DestinationError(field, "invalid_number",
                               f"the number contains {ch!r}, which is not allowed "
                               "(only digits, a leading +, spaces, hyphens, dots, parentheses)")


def _check_length(digits: str, field: str) -> None:
    if len(digits) > E164_MAX_DIGITS:
        raise DestinationError(field, "invalid_number",
                               f"the number has {len(digits)} digits; E.164 allows at most "
                               f"{E164_MAX_DIGITS} including the country code")
    if digits.startswith(KOREA):
        if len(digits) - len(KOREA) < MIN_KOREAN_NSN_DIGITS:
            raise DestinationError(field, "invalid_number", "the number is too short")
    elif len(digits) < MIN_INTERNATIONAL_DIGITS:
        raise DestinationError(field, "invalid_number", "the number is too short")


# -- classification --------------------------------------------------------------------------------
def classify(e164: str) -> NumberKind:
    """The kind of an E.164 number (as returned by :func:`normalize_e164`); see the module's
    table. ValueError if ``e164`` is not ``+`` followed by digits (a caller's bug)."""
    if not _is_e164(e164):
        raise ValueError("classify expects an E.164 number (+ and digits)")
    if not e164.startswith("+" + KOREA):
        return NumberKind.INTERNATIONAL
    return _classify_korean(e164[1 + len(KOREA):])


def _classify_korean(nsn: str) -> NumberKind:
    """``nsn``: the national significant number (national number without its trunk 0)."""
    n = len(nsn)
    head2 = nsn[:2]
    if nsn.startswith("1"):
        if head2 == "10":
            return NumberKind.MOBILE if n == 10 else NumberKind.UNKNOWN_KR
        # Lengths keep the 1-ranges apart: legacy mobile has 9–10 digits, 16xx/18xx
        # representative numbers 8, special numbers 3–4.
        if head2 in _LEGACY_MOBILE and n in (9, 10):
            return NumberKind.MOBILE
        if head2 in _REPRESENTATIVE and n == 8:
            return NumberKind.SERVICE
        if n in (3, 4):
            return NumberKind.SHORT
        return NumberKind.UNKNOWN_KR
    if nsn.startswith("2"):
        return NumberKind.LANDLINE if _is_subscriber(nsn[1:]) else NumberKind.UNKNOWN_KR
    if head2 in _LANDLINE_AREAS:
        return NumberKind.LANDLINE if _is_subscriber(nsn[2:]) else NumberKind.UNKNOWN_KR
    if head2 == "70":
        return NumberKind.VOIP if n == 10 else NumberKind.UNKNOWN_KR
    if head2 == "60":
        return NumberKind.PREMIUM if n in (9, 10) else NumberKind.UNKNOWN_KR
    if head2 in ("80", "30"):
        return NumberKind.SERVICE if n in (9, 10) else NumberKind.UNKNOWN_KR
    if head2 == "50":  # 050x: one more digit names the provider
        return NumberKind.SERVICE if n in (10, 11) else NumberKind.UNKNOWN_KR
    return NumberKind.UNKNOWN_KR


def _is_subscriber(local: str) -> bool:
    # A landline subscriber number (국번 + 번호) is 7–8 digits; its exchange never starts with 0
    # (a trunk/international prefix) or 1 (special numbers).
    return len(local) in (7, 8) and local[0] not in "01"


def _is_e164(text: str) -> bool:
    return (len(text) >= 2 and text[0] == "+" and all(ch in _DIGITS for ch in text[1:]))


def _range_code_length(nsn: str) -> int:
    """How many leading digits of a Korean NSN name its range (area code, mobile prefix…)."""
    kind = _classify_korean(nsn)
    if kind in (NumberKind.SHORT, NumberKind.UNKNOWN_KR):
        return 0
    if kind is NumberKind.LANDLINE and nsn.startswith("2"):
        return 1
    if kind is NumberKind.SERVICE and nsn.startswith("50"):
        return 3
    if kind is NumberKind.SERVICE and nsn.startswith("1"):
        return 4
    return 2


def _country_code_length(digits: str) -> int:
    if digits[:1] in _ONE_DIGIT_CC:
        return 1
    if digits[:2] in _TWO_DIGIT_CC:
        return 2
    return 3


def mask_number(e164: str) -> str:
    """A number for logs: country code (and for Korea the range code), stars, last 4 digits.

    ``+821012345678`` → ``+8210****5678``, ``+12125550100`` → ``+1******0100``. The length is
    kept. Never raises: anything that is not E.164 is masked entirely.
    """
    if not _is_e164(e164):
        return "*" * len(e164)
    digits = e164[1:]
    keep = _country_code_length(digits)
    if digits.startswith(KOREA):
        keep += _range_code_length(digits[len(KOREA):])
    rest = digits[keep:]
    if len(rest) <= 4:  # nothing personal left to hide (special numbers, tiny test inputs)
        return e164
    return "+" + digits[:keep] + "*" * (len(rest) - 4) + rest[-4:]


# -- the tenant's rules ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DestinationRules:
    """What a tenant may call beyond the default (Korean mobile, landline, VoIP).

    ``allowed_prefixes`` (E.164 prefixes such as ``+8280``) are allowed whatever their kind;
    ``blocked_prefixes`` are refused whatever else says, allowed prefixes included.
    """

    allow_international: bool = False
    allow_premium: bool = False
    allowed_prefixes: tuple[str, ...] = ()
    blocked_prefixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A prefix written "+82 10" would silently match nothing: refuse it here too, not only
        # in from_json.
        for name in ("allowed_prefixes", "blocked_prefixes"):
            prefixes = _prefixes(getattr(self, name), f"destination_rules.{name}")
            object.__setattr__(self, name, prefixes)

    @classmethod
    def from_json(cls, data: object, field: str = "destination_rules") -> DestinationRules:
        """Rules from parsed JSON (``None`` → the defaults). FieldError names the bad member:
        ``destination_rules.allowed_prefixes[1]`` with code ``invalid_type``,
        ``invalid_prefix`` or ``unknown_field``."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise FieldError(field, "invalid_type", "expected an object")
        for key in data:
            if key not in _RULE_FIELDS:
                raise FieldError(f"{field}.{key}", "unknown_field",
                                 f"unknown field; expected one of {', '.join(_RULE_FIELDS)}")
        flags: dict[str, bool] = {}
        for name in ("allow_international", "allow_premium"):
            value = data.get(name, False)
            if not isinstance(value, bool):
                raise FieldError(f"{field}.{name}", "invalid_type", "expected true or false")
            flags[name] = value
        return cls(
            allow_international=flags["allow_international"],
            allow_premium=flags["allow_premium"],
            allowed_prefixes=_prefixes(data.get("allowed_prefixes", []),
                                       f"{field}.allowed_prefixes"),
            blocked_prefixes=_prefixes(data.get("blocked_prefixes", []),
                                       f"{field}.blocked_prefixes"),
        )

    def as_json(self) -> dict[str, object]:
        """The JSON form read by :meth:`from_json`."""
        return {
            "allow_international": self.allow_international,
            "allow_premium": self.allow_premium,
            "allowed_prefixes": list(self.allowed_prefixes),
            "blocked_prefixes": list(self.blocked_prefixes),
        }


_RULE_FIELDS = ("allow_international", "allow_premium", "allowed_prefixes", "blocked_prefixes")


def _prefixes(value: object, field: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise FieldError(field, "invalid_type", "expected a list of E.164 prefixes")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise FieldError(f"{field}[{index}]", "invalid_type", "expected a string")
        if not _PREFIX_RE.fullmatch(item):
            raise FieldError(f"{field}[{index}]", "invalid_prefix",
                             "expected '+' followed by 1 to 15 digits, the first not 0 "
                             "(e.g. +8280)")
    return tuple(value)


# -- the decision ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Destination:
    """A number the policy accepted. ``national``: the Korean national form (``01012345678``,
    ``15881234``) for +82 numbers, else the E.164 digits without ``+``."""

    e164: str
    kind: NumberKind
    national: str

    def __repr__(self) -> str:  # logs see the masked number only
        return f"Destination({mask_number(self.e164)}, {self.kind.name})"


# Kinds refused by default, with the code and message of the refusal.
_REFUSALS: dict[NumberKind, tuple[str, str]] = {
    NumberKind.INTERNATIONAL: ("international_not_allowed",
                               "international numbers are not allowed for this tenant"),
    NumberKind.PREMIUM: ("premium_not_allowed",
                         "premium-rate (060) numbers are not allowed for this tenant"),
    NumberKind.SERVICE: ("service_number_not_allowed",
                         "service numbers (080, 050x, 030, 15xx/16xx/18xx) are not called "
                         "unless listed in allowed_prefixes"),
    NumberKind.SHORT: ("short_number_not_allowed",
                       "special short numbers (112, 119, 114…) are not called unless "
                       "allowed_prefixes lists the whole number"),
    NumberKind.UNKNOWN_KR: ("not_a_korean_range",
                            "the number is not in a Korean mobile, landline or VoIP range"),
}


def check_destination(raw: str, rules: DestinationRules, *, field: str = "to") -> Destination:
    """Normalise ``raw`` and decide whether the tenant may call it.

    Order: a malformed number → ``invalid_number``; a blocked prefix → ``blocked_prefix``
    (wins over everything); an allowed prefix → accepted whatever the kind; else MOBILE,
    LANDLINE and VOIP are accepted, INTERNATIONAL and PREMIUM only when the rules allow them,
    and SERVICE, SHORT, UNKNOWN_KR are refused with their own code.

    One exception to "an allowed prefix overrides the kind": a SHORT number (112 police,
    119 fire, …) is only allowed when an allowed prefix is the whole number, so a broad
    ``+821`` meant for 1588 numbers can never make the engine robocall emergency services.
    """
    e164 = normalize_e164(raw, field=field)
    if any(e164.startswith(prefix) for prefix in rules.blocked_prefixes):
        raise DestinationError(field, "blocked_prefix",
                               "the number is in a range this tenant blocks")
    kind = classify(e164)
    if kind is NumberKind.SHORT:
        listed = e164 in rules.allowed_prefixes
    else:
        listed = any(e164.startswith(prefix) for prefix in rules.allowed_prefixes)
    allowed = (
        listed
        or kind in (NumberKind.MOBILE, NumberKind.LANDLINE, NumberKind.VOIP)
        or (kind is NumberKind.INTERNATIONAL and rules.allow_international)
        or (kind is NumberKind.PREMIUM and rules.allow_premium)
    )
    if not allowed:
        code, message = _REFUSALS[kind]
        raise DestinationError(field, code, message)
    return Destination(e164=e164, kind=kind, national=_national(e164, kind))


def _national(e164: str, kind: NumberKind) -> str:
    if not e164.startswith("+" + KOREA):
        return e164[1:]
    nsn = e164[1 + len(KOREA):]
    # Special and representative numbers are dialled as they are, without a trunk 0.
    if kind is NumberKind.SHORT or (kind is NumberKind.SERVICE and nsn.startswith("1")):
        return nsn
    return "0" + nsn
