"""Play parts: what a play, gather or retry prompt says (prompt id, text, digits, amount, file…)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .parsing import ParseContext, Use
from .reader import is_identifier, suggest
from .templating import Template

PART_KINDS = ("prompt", "text", "digits", "amount", "file", "silence")


@dataclass(frozen=True, slots=True)
class PromptPart:
    prompt_id: str


@dataclass(frozen=True, slots=True)
class TextPart:
    template: Template


@dataclass(frozen=True, slots=True)
class DigitsPart:
    template: Template


@dataclass(frozen=True, slots=True)
class AmountPart:
    template: Template


@dataclass(frozen=True, slots=True)
class FilePart:
    path: Path


@dataclass(frozen=True, slots=True)
class SilencePart:
    ms: int


Part = PromptPart | TextPart | DigitsPart | AmountPart | FilePart | SilencePart


def is_static(parts: tuple[Part, ...]) -> bool:
    """True when the parts use no variable, so their audio can be rendered once."""
    return all(not isinstance(p, TextPart | DigitsPart | AmountPart) or not p.template.names
               for p in parts)


def parse_parts(node: Node, ctx: ParseContext, what: str) -> tuple[Part, ...] | None:
    """One part, a bare prompt id, or a list of them."""
    nodes = node.value if isinstance(node, SequenceNode) else [node]
    if isinstance(node, SequenceNode) and not nodes:
        ctx.reader.error(node, "invalid-value", f"{what}: the list of parts is empty")
        return None
    parts: list[Part] = []
    for i, item in enumerate(nodes):
        label = f"{what}[{i}]" if isinstance(node, SequenceNode) else what
        part = _parse_part(item, ctx, label)
        if part is not None:
            parts.append(part)
    return tuple(parts) if len(parts) == len(nodes) else None


def _parse_part(node: Node, ctx: ParseContext, what: str) -> Part | None:
    reader = ctx.reader
    if isinstance(node, ScalarNode):
        prompt_id = reader.text(node, what)
        return _prompt(prompt_id, node, ctx, what) if prompt_id is not None else None
    if not isinstance(node, MappingNode):
        reader.wrong_type(node, what, "a prompt id or a part such as {prompt: id}")
        return None
    items = reader.mapping(node, what)
    if items is None:
        return None
    if len(items) != 1:
        reader.error(node, "invalid-value",
                     f"{what}: a part has exactly one key, one of {', '.join(PART_KINDS)}")
        return None
    ((key, (key_node, value)),) = items.items()
    if key not in PART_KINDS:
        reader.error(key_node, "unknown-key",
                     f"{what}: unknown part '{key}'{suggest(key, PART_KINDS)}; expected one of "
                     + ", ".join(PART_KINDS))
        return None
    label = f"{what}.{key}"
    if key == "prompt":
        prompt_id = reader.text(value, label)
        return _prompt(prompt_id, value, ctx, label) if prompt_id is not None else None
    if key == "silence":
        ms = reader.integer(value, f"{label} (milliseconds)", minimum=1, maximum=60_000)
        return SilencePart(ms) if ms is not None else None
    if key == "file":
        return _file(value, ctx, label)
    use = {"text": Use.TTS, "digits": Use.DIGITS, "amount": Use.AMOUNT}[key]
    template = ctx.template(value, label, use)
    if template is None:
        return None
    if key == "text":
        return TextPart(template)
    if not template.names:
        literal = template.source.replace(",", "")
        if not literal.isdigit():
            reader.error(value, "invalid-value",
                         f"{label}: expected digits or a template such as \"{{code}}\"")
            return None
    return DigitsPart(template) if key == "digits" else AmountPart(template)


def _prompt(prompt_id: str, node: Node, ctx: ParseContext, what: str) -> PromptPart | None:
    if not is_identifier(prompt_id):
        ctx.reader.error(node, "invalid-value",
                         f"{what}: '{prompt_id}' is not a prompt id (lowercase letters, digits, "
                         "_); "
                         "for inline text write {text: \"…\"}")
        return None
    if ctx.prompts is not None and prompt_id not in ctx.prompts:
        ctx.reader.error(node, "unknown-prompt",
                         f"{what}: prompt '{prompt_id}' is not in the catalogue"
                         f"{suggest(prompt_id, _ids(ctx.prompts))}")
        return None
    return PromptPart(prompt_id)


def _ids(prompts: object) -> list[str]:
    try:
        return list(prompts)  # type: ignore[call-overload]
    except TypeError:
        return []


def _file(node: Node, ctx: ParseContext, what: str) -> FilePart | None:
    name = ctx.reader.text(node, what)
    if name is None:
        return None
    path = Path(name)
    if not path.is_absolute() and ctx.base_dir is not None:
        path = ctx.base_dir / path
    if ctx.base_dir is not None or path.is_absolute():
        if not path.is_file():
            ctx.reader.error(node, "missing-file", f"{what}: file '{name}' does not exist "
                             f"(looked in {path.parent})")
            return None
        if path.suffix.lower() != ".wav":
            ctx.reader.error(node, "invalid-value", f"{what}: '{name}' is not a .wav file")
            return None
    return FilePart(path)
