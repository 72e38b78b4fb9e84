"""The prompt catalogue: YAML files mapping prompt id → Korean text.

```yaml
intro_bank: 안녕하세요. 고객님의 본인 확인을 위한 자동 응답 전화입니다.
goodbye: 이용해 주셔서 감사합니다.
```

Files are read with ``yaml.compose`` so every error names file:line:column: a file that is not
a mapping, a bad id (``[a-z0-9_]+``), an id defined twice (in one file or across files), or a
text that is not a non-empty string (``1234`` or ``yes`` unquoted are not strings in YAML).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import MediaError

PROMPT_ID = re.compile(r"[a-z0-9_]+")
_STR_TAG = "tag:yaml.org,2002:str"


class CatalogueError(MediaError):
    """One problem in a catalogue file, at ``path:line:column`` (1-based)."""

    def __init__(self, path: str, line: int, column: int, message: str) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.message = message
        super().__init__(f"{path}:{line}:{column}: {message}")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a prompt was defined (1-based line and column)."""

    path: Path
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


def _error_at(path: Path, node: yaml.Node, message: str) -> CatalogueError:
    mark = node.start_mark
    return CatalogueError(str(path), mark.line + 1, mark.column + 1, message)


class Catalogue:
    """Prompt id → text, loaded from one or more YAML files, immutable once loaded."""

    __slots__ = ("_origins", "_texts")

    def __init__(self, texts: Mapping[str, str], origins: Mapping[str, Origin] | None = None):
        self._texts: dict[str, str] = dict(texts)
        self._origins: dict[str, Origin] = dict(origins or {})

    @classmethod
    def load(cls, path: Path | str, *extra_paths: Path | str) -> Catalogue:
        """Load and merge catalogue files; an id defined in two files is an error."""
        texts: dict[str, str] = {}
        origins: dict[str, Origin] = {}
        for p in (path, *extra_paths):
            _load_file(Path(p), texts, origins)
        return cls(texts, origins)

    @classmethod
    def from_mapping(cls, texts: Mapping[str, str]) -> Catalogue:
        """A catalogue built in code (tests, generated prompts); ids and texts are checked."""
        for prompt_id, text in texts.items():
            if not PROMPT_ID.fullmatch(prompt_id):
                raise MediaError(f"bad prompt id {prompt_id!r}: use lowercase a-z, 0-9 and _")
            if not isinstance(text, str) or not text.strip():
                raise MediaError(f"prompt {prompt_id!r}: text must be a non-empty string")
        return cls({k: v.strip() for k, v in texts.items()})

    def text(self, prompt_id: str) -> str:
        """The text of ``prompt_id``; MediaError (also a KeyError) if there is none."""
        try:
            return self._texts[prompt_id]
        except KeyError:
            raise UnknownPrompt(prompt_id) from None

    def path_of(self, prompt_id: str) -> Origin | None:
        """File, line and column where ``prompt_id`` is defined (None if built in code)."""
        if prompt_id not in self._texts:
            raise UnknownPrompt(prompt_id)
        return self._origins.get(prompt_id)

    def ids(self) -> list[str]:
        """Prompt ids in file order."""
        return list(self._texts)

    def items(self) -> list[tuple[str, str]]:
        """(id, text) pairs in file order."""
        return list(self._texts.items())

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self._texts

    def __len__(self) -> int:
        return len(self._texts)

    def __iter__(self) -> Iterator[str]:
        return iter(self._texts)

    def __repr__(self) -> str:
        files = sorted({str(o.path) for o in self._origins.values()})
        return f"Catalogue({len(self._texts)} prompts from {', '.join(files) or 'code'})"


class UnknownPrompt(MediaError, KeyError):
    """No prompt with this id (prompt ids are not secret, so the id is in the message)."""

    def __init__(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        super().__init__(f"unknown prompt id {prompt_id!r}")

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return f"unknown prompt id {self.prompt_id!r}"


def _load_file(path: Path, texts: dict[str, str], origins: dict[str, Origin]) -> None:
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MediaError(f"{path}: cannot read prompt catalogue: {exc}") from exc
    try:
        root = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise CatalogueError(str(path), line, column, f"invalid YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise CatalogueError(str(path), 1, 1, f"invalid YAML: {exc}") from exc
    if root is None:
        return  # empty file (or only comments): no prompts yet
    if not isinstance(root, yaml.MappingNode):
        raise _error_at(path, root, "a prompt catalogue must be a mapping of id: text")
    for key_node, value_node in root.value:
        if not (
            isinstance(key_node, yaml.ScalarNode)
            and key_node.tag == _STR_TAG
            and PROMPT_ID.fullmatch(key_node.value)
        ):
            shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else key_node.id
            raise _error_at(
                path, key_node, f"bad prompt id {shown!r}: use lowercase a-z, 0-9 and _"
            )
        prompt_id = key_node.value
        if prompt_id in texts:
            first = origins[prompt_id]
            raise _error_at(path, key_node, f"duplicate prompt id {prompt_id!r} (first at {first})")
        if not (isinstance(value_node, yaml.ScalarNode) and value_node.tag == _STR_TAG):
            kind = value_node.tag.rsplit(":", 1)[-1]  # int, bool, null, seq, map…
            raise _error_at(
                path,
                value_node,
                f"prompt {prompt_id!r}: text must be a string, got {kind} "
                "(quote numbers and yes/no)",
            )
        text = value_node.value.strip()
        if not text:
            raise _error_at(path, value_node, f"prompt {prompt_id!r}: text is empty")
        texts[prompt_id] = text
        mark = key_node.start_mark
        origins[prompt_id] = Origin(path, mark.line + 1, mark.column + 1)
