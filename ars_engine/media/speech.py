"""Digits and amounts as sequences of pre-rendered clip ids (pure: no audio, no I/O).

Secrets (codes, PINs) are spoken by concatenating clips rendered once from fixed text, so a
secret never reaches a TTS engine, a cache file name or a log line. Errors here name a position,
never the value.

Korean readings:

* digit by digit (codes): 0 is "공", 1-9 are Sino-Korean 일…구: "1204" → 일 이 공 사.
* amounts: Sino-Korean numerals grouped by 10^4 (만, 억, 조), one word per group, then "원":
  12300 → "일만 이천삼백 원". "일" is kept before 만/억/조 (the product spec reads 10000 as
  "일만"), dropped before 십/백/천 (1300 → "천삼백", 10 → "십"); zero is "영 원".
"""

from __future__ import annotations

from functools import lru_cache

DIGIT_CLIP_IDS: dict[str, str] = {str(d): f"digit_{d}" for d in range(10)}
_SINO = ("영", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구")

# The Korean text of every clip id; prompts/clips_ko.yaml must say the same (a test checks it).
CLIP_TEXT: dict[str, str] = {
    **{f"digit_{d}": ("공" if d == 0 else _SINO[d]) for d in range(10)},
    **{f"num_{d}": _SINO[d] for d in range(10)},
    "unit_10": "십",
    "unit_100": "백",
    "unit_1000": "천",
    "unit_1e4": "만",
    "unit_1e8": "억",
    "unit_1e12": "조",
    "won": "원",
}
CLIP_IDS: tuple[str, ...] = tuple(CLIP_TEXT)

MAX_AMOUNT = 10**16 - 1  # 9999조 9999억 9999만 9999
_SMALL_UNITS = ((1000, "unit_1000"), (100, "unit_100"), (10, "unit_10"))
_BIG_UNITS = ((10**12, "unit_1e12"), (10**8, "unit_1e8"), (10**4, "unit_1e4"))


def not_a_digit(position: int) -> ValueError:
    """The error for a non-digit at 1-based ``position``; it never carries the value."""
    return ValueError(f"position {position}: not a digit")


def digit_clip_ids(digits: str) -> list[str]:
    """Clip ids reading ``digits`` one by one: "1204" → digit_1, digit_2, digit_0, digit_4.

    Only ASCII 0-9 are accepted; the ValueError names the position, never the value.
    """
    ids = []
    for position, ch in enumerate(digits, 1):
        clip_id = DIGIT_CLIP_IDS.get(ch)
        if clip_id is None:
            raise not_a_digit(position)
        ids.append(clip_id)
    return ids


def _check_amount(won: int) -> None:
    if isinstance(won, bool) or not isinstance(won, int):
        raise TypeError("amount must be an int number of won")
    if won < 0:
        raise ValueError("amount must not be negative")
    if won > MAX_AMOUNT:
        raise ValueError("amount is too large (max 10^16 - 1 won)")


def _group_ids(n: int) -> list[str]:
    """Clip ids of 1..9999 without "일" before 십/백/천: 1300 → 천 삼 백."""
    ids = []
    for value, unit in _SMALL_UNITS:
        d, n = divmod(n, value)
        if d:
            if d > 1:
                ids.append(f"num_{d}")
            ids.append(unit)
    if n:
        ids.append(f"num_{n}")
    return ids


@lru_cache(maxsize=4096, typed=True)  # typed: True must not hit the entry for 1
def amount_clip_groups(won: int) -> tuple[tuple[str, ...], ...]:
    """Clip ids of an amount in won, one tuple per spoken word (the last is ("won",)).

    12300 → (("num_1", "unit_1e4"), ("num_2", "unit_1000", "num_3", "unit_100"), ("won",)).
    A pause goes between words when played.
    """
    _check_amount(won)
    if won == 0:
        return (("num_0",), ("won",))
    words: list[tuple[str, ...]] = []
    rest = won
    for value, unit in _BIG_UNITS:
        group, rest = divmod(rest, value)
        if group:
            # 1 before 만/억/조 keeps its "일" (일만), unlike before 십/백/천.
            ids = ["num_1"] if group == 1 else _group_ids(group)
            words.append((*ids, unit))
    if rest:
        words.append(tuple(_group_ids(rest)))
    words.append(("won",))
    return tuple(words)


def amount_clip_ids(won: int) -> list[str]:
    """Clip ids of an amount in won, flat: 12300 → num_1 unit_1e4 num_2 unit_1000 num_3 … won."""
    return [clip_id for word in amount_clip_groups(won) for clip_id in word]


def amount_words(won: int) -> str:
    """The Korean reading of an amount as text: 12300 → "일만 이천삼백 원".

    For display and tests of non-secret amounts; never log the result for a secret amount.
    """
    return " ".join("".join(CLIP_TEXT[i] for i in word) for word in amount_clip_groups(won))
