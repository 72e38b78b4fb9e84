"""Templates: text with ``{name}`` placeholders (``{{`` and ``}}`` are literal braces)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .secrets import Secret


class TemplateSyntaxError(ValueError):
    """A template with an unbalanced or empty brace; the message says where."""


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template. ``parts`` alternates literal text and variable names (as 1-tuples)."""

    source: str
    parts: tuple[str | tuple[str], ...]

    @classmethod
    def parse(cls, source: str) -> Template:
        parts: list[str | tuple[str]] = []
        literal: list[str] = []
        i, n = 0, len(source)
        while i < n:
            c = source[i]
            if c == "{":
                if source.startswith("{{", i):
                    literal.append("{")
                    i += 2
                    continue
                end = source.find("}", i)
                if end < 0:
                    raise TemplateSyntaxError(f"'{{' at position {i + 1} is not closed")
                name = source[i + 1:end].strip()
                if not name or "{" in name:
                    raise TemplateSyntaxError(f"empty or nested placeholder at position {i + 1}")
                if literal:
                    parts.append("".join(literal))
                    literal = []
                parts.append((name,))
                i = end + 1
            elif c == "}":
                if source.startswith("}}", i):
                    literal.append("}")
                    i += 2
                    continue
                raise TemplateSyntaxError(f"'}}' at position {i + 1} has no '{{' (write '}}}}')")
            else:
                literal.append(c)
                i += 1
        if literal:
            parts.append("".join(literal))
        return cls(source, tuple(parts))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p[0] for p in self.parts if isinstance(p, tuple))

    @property
    def is_single_variable(self) -> bool:
        return len(self.parts) == 1 and isinstance(self.parts[0], tuple)

    def render(self, variables: Mapping[str, object]) -> str:
        """Text with secrets masked: for display, logs and TTS-safe text."""
        out = []
        for p in self.parts:
            out.append(str(variables.get(p[0], "")) if isinstance(p, tuple) else p)
        return "".join(out)

    def render_value(self, variables: Mapping[str, object]) -> object:
        """The value: a single ``{name}`` keeps its type (Secret, int); a template built with a
        secret becomes a Secret; otherwise text."""
        if self.is_single_variable:
            return variables.get(self.parts[0][0], "")
        secret = False
        out = []
        for p in self.parts:
            if isinstance(p, tuple):
                v = variables.get(p[0], "")
                if isinstance(v, Secret):
                    secret = True
                    out.append(v.reveal())
                else:
                    out.append(str(v))
            else:
                out.append(p)
        text = "".join(out)
        return Secret(text) if secret else text
