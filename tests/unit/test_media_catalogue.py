"""Prompt catalogue loading (ars_engine.media.catalogue): ids, texts, file:line:column errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ars_engine.errors import MediaError
from ars_engine.media.catalogue import Catalogue, CatalogueError, Origin, UnknownPrompt
from ars_engine.media.speech import CLIP_IDS, CLIP_TEXT

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "ko.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_reads_ids_texts_and_origins_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '# comment\nintro: 안녕하세요.\ngoodbye: "감사합니다."\nlong_text: >\n  첫 줄\n  둘째 줄\n',
    )
    cat = Catalogue.load(path)
    assert cat.ids() == ["intro", "goodbye", "long_text"]
    assert cat.text("intro") == "안녕하세요."
    assert cat.text("long_text") == "첫 줄 둘째 줄"  # folded, trailing newline stripped
    assert cat.items()[1] == ("goodbye", "감사합니다.")
    assert "intro" in cat and "nope" not in cat
    assert len(cat) == 3
    assert cat.path_of("goodbye") == Origin(path, 3, 1)
    assert str(cat.path_of("goodbye")) == f"{path}:3:1"


def test_load_merges_several_files(tmp_path: Path) -> None:
    a = write(tmp_path, "intro: 하나\n", "a.yaml")
    b = write(tmp_path, "\n\nbye: 둘\n", "b.yaml")
    cat = Catalogue.load(a, b)
    assert cat.ids() == ["intro", "bye"]
    assert cat.path_of("bye") == Origin(b, 3, 1)


def test_empty_file_is_an_empty_catalogue(tmp_path: Path) -> None:
    assert Catalogue.load(write(tmp_path, "# nothing yet\n")).ids() == []


@pytest.mark.parametrize(
    ("source", "line", "column", "message"),
    [
        ("- intro\n- bye\n", 1, 1, "must be a mapping"),
        ("just text\n", 1, 1, "must be a mapping"),
        ("intro: 하나\nbye: 둘\nintro: 셋\n", 3, 1, "duplicate prompt id 'intro' (first at "),
        ("intro: 하나\nBad_Id: 둘\n", 2, 1, "bad prompt id 'Bad_Id'"),
        ("intro: 하나\nbad-id: 둘\n", 2, 1, "bad prompt id 'bad-id'"),
        ("? [a, b]\n: 하나\n", 1, 3, "bad prompt id 'sequence'"),
        ("intro: 하나\ncode: 1234\n", 2, 7, "text must be a string, got int"),
        ("intro: yes\n", 1, 8, "got bool"),
        ("intro:\nbye: 둘\n", 1, 7, "got null"),
        ("intro:\n  - 하나\n", 2, 3, "got seq"),
        ('intro: ""\n', 1, 8, "text is empty"),
        ("intro: 하나\n  bad: [\n", 2, 6, "invalid YAML"),
        ("intro: [하나\n", 2, 1, "invalid YAML"),
    ],
)
def test_errors_name_file_line_and_column(
    tmp_path: Path, source: str, line: int, column: int, message: str
) -> None:
    path = write(tmp_path, source)
    with pytest.raises(CatalogueError) as caught:
        Catalogue.load(path)
    error = caught.value
    assert (error.path, error.line, error.column) == (str(path), line, column)
    assert message in error.message
    assert str(error).startswith(f"{path}:{line}:{column}: ")
    assert isinstance(error, MediaError)


def test_duplicate_across_files_names_both_places(tmp_path: Path) -> None:
    a = write(tmp_path, "intro: 하나\n", "a.yaml")
    b = write(tmp_path, "x: 둘\nintro: 셋\n", "b.yaml")
    with pytest.raises(CatalogueError) as caught:
        Catalogue.load(a, b)
    assert str(caught.value) == f"{b}:2:1: duplicate prompt id 'intro' (first at {a}:1:1)"


def test_missing_file_is_a_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="cannot read prompt catalogue"):
        Catalogue.load(tmp_path / "missing.yaml")


def test_unknown_id_is_a_media_error_and_a_key_error(tmp_path: Path) -> None:
    cat = Catalogue.load(write(tmp_path, "intro: 하나\n"))
    with pytest.raises(UnknownPrompt) as caught:
        cat.text("nope")
    assert isinstance(caught.value, MediaError) and isinstance(caught.value, KeyError)
    assert str(caught.value) == "unknown prompt id 'nope'"
    with pytest.raises(KeyError):
        cat.path_of("nope")


def test_from_mapping_checks_ids_and_texts() -> None:
    cat = Catalogue.from_mapping({"intro": " 하나 "})
    assert cat.text("intro") == "하나"
    assert cat.path_of("intro") is None
    with pytest.raises(MediaError):
        Catalogue.from_mapping({"Intro": "하나"})
    with pytest.raises(MediaError):
        Catalogue.from_mapping({"intro": "  "})


def test_shipped_clip_catalogue_matches_speech_clip_texts() -> None:
    clips = Catalogue.load(REPO / "prompts" / "clips_ko.yaml")
    assert sorted(clips.ids()) == sorted(CLIP_IDS)
    assert dict(clips.items()) == CLIP_TEXT


def test_shipped_prompt_catalogue_loads_with_the_clips() -> None:
    cat = Catalogue.load(REPO / "prompts" / "ko.yaml", REPO / "prompts" / "clips_ko.yaml")
    assert set(CLIP_IDS) <= set(cat.ids())
