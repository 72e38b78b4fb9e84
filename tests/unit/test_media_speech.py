"""Digits and amounts as clip ids (ars_engine.media.speech): Korean readings as tables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ars_engine.media.speech import (
    CLIP_IDS,
    CLIP_TEXT,
    MAX_AMOUNT,
    amount_clip_groups,
    amount_clip_ids,
    amount_words,
    digit_clip_ids,
)

AMOUNTS = [
    (0, "영 원"),
    (1, "일 원"),
    (5, "오 원"),
    (10, "십 원"),
    (11, "십일 원"),
    (19, "십구 원"),
    (20, "이십 원"),
    (99, "구십구 원"),
    (100, "백 원"),
    (101, "백일 원"),
    (110, "백십 원"),
    (250, "이백오십 원"),
    (1000, "천 원"),
    (1001, "천일 원"),
    (1300, "천삼백 원"),
    (9999, "구천구백구십구 원"),
    (10000, "일만 원"),
    (10001, "일만 일 원"),
    (12300, "일만 이천삼백 원"),
    (20000, "이만 원"),
    (100000, "십만 원"),
    (110000, "십일만 원"),
    (1000000, "백만 원"),
    (10000000, "천만 원"),
    (12345678, "천이백삼십사만 오천육백칠십팔 원"),
    (50000000, "오천만 원"),
    (100000000, "일억 원"),
    (100010000, "일억 일만 원"),
    (100000001, "일억 일 원"),
    (123456789, "일억 이천삼백사십오만 육천칠백팔십구 원"),
    (1000000000000, "일조 원"),
    (1000100010001, "일조 일억 일만 일 원"),
    (MAX_AMOUNT, "구천구백구십구조 구천구백구십구억 구천구백구십구만 구천구백구십구 원"),
]


@pytest.mark.parametrize(("won", "words"), AMOUNTS)
def test_amount_words(won: int, words: str) -> None:
    assert amount_words(won) == words


@pytest.mark.parametrize(
    ("won", "ids"),
    [
        (0, ["num_0", "won"]),
        (10, ["unit_10", "won"]),
        (1300, ["unit_1000", "num_3", "unit_100", "won"]),
        (12300, ["num_1", "unit_1e4", "num_2", "unit_1000", "num_3", "unit_100", "won"]),
        (100000000, ["num_1", "unit_1e8", "won"]),
        (10**12, ["num_1", "unit_1e12", "won"]),
    ],
)
def test_amount_clip_ids(won: int, ids: list[str]) -> None:
    assert amount_clip_ids(won) == ids


def test_amount_clip_groups_are_spoken_words() -> None:
    assert amount_clip_groups(12300) == (
        ("num_1", "unit_1e4"),
        ("num_2", "unit_1000", "num_3", "unit_100"),
        ("won",),
    )


@pytest.mark.parametrize(
    ("won", "error"),
    [(-1, ValueError), (MAX_AMOUNT + 1, ValueError), (True, TypeError), (12.5, TypeError)],
)
def test_amount_rejects_bad_values(won: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        amount_clip_ids(won)  # type: ignore[arg-type]


def test_amount_of_true_is_not_the_amount_one() -> None:
    amount_words(1)  # fills the cache for 1
    with pytest.raises(TypeError):
        amount_words(True)  # type: ignore[arg-type]


_DIGIT = {"일": 1, "이": 2, "삼": 3, "사": 4, "오": 5, "육": 6, "칠": 7, "팔": 8, "구": 9}
_SMALL = {"십": 10, "백": 100, "천": 1000}
_BIG = {"만": 10**4, "억": 10**8, "조": 10**12}


def parse_korean_amount(words: str) -> int:
    """An independent reader of Sino-Korean amounts, to check the writer against."""
    assert words.endswith(" 원")
    body = words[: -len(" 원")]
    if body == "영":
        return 0
    total = 0
    for word in body.split(" "):
        big = _BIG.get(word[-1], 1)
        if big > 1:
            word = word[:-1]
        group = pending = 0
        for ch in word:
            if ch in _DIGIT:
                assert pending == 0, "two numerals in a row"
                pending = _DIGIT[ch]
            else:
                group += (pending or 1) * _SMALL[ch]
                pending = 0
        total += (group + pending) * big
    return total


@given(st.integers(min_value=0, max_value=MAX_AMOUNT))
def test_amount_words_read_back_to_the_amount(won: int) -> None:
    words = amount_words(won)
    assert parse_korean_amount(words) == won
    assert len(amount_clip_ids(won)) == len(words.replace(" ", ""))  # one clip per syllable
    assert all(clip_id in CLIP_IDS for clip_id in amount_clip_ids(won))


@given(st.integers(min_value=1, max_value=MAX_AMOUNT))
def test_il_is_dropped_before_sip_baek_cheon_and_kept_before_man_eok_jo(won: int) -> None:
    for word in amount_words(won).split(" "):
        assert not any(f"일{unit}" in word for unit in "십백천")
        assert word not in ("만", "억", "조")  # a group of one is 일만, 일억, 일조


def test_digit_clip_ids_reads_one_by_one() -> None:
    assert digit_clip_ids("1204") == ["digit_1", "digit_2", "digit_0", "digit_4"]
    assert digit_clip_ids("") == []
    assert [CLIP_TEXT[i] for i in digit_clip_ids("0123456789")] == list("공일이삼사오육칠팔구")


@pytest.mark.parametrize(
    ("value", "position"), [("12a4", 3), ("x", 1), ("123 ", 4), ("1٣", 2), ("12-34", 3)]
)
def test_digit_error_names_position_never_the_value(value: str, position: int) -> None:
    with pytest.raises(ValueError) as caught:
        digit_clip_ids(value)
    assert str(caught.value) == f"position {position}: not a digit"  # the value may be a secret


def test_every_clip_has_one_korean_syllable() -> None:
    assert set(CLIP_IDS) == {f"digit_{d}" for d in range(10)} | {f"num_{d}" for d in range(10)} | {
        "unit_10",
        "unit_100",
        "unit_1000",
        "unit_1e4",
        "unit_1e8",
        "unit_1e12",
        "won",
    }
    assert all(len(text) == 1 and "가" <= text <= "힣" for text in CLIP_TEXT.values())
