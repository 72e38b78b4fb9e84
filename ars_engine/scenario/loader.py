"""Load a scenario file: YAML nodes → model, every problem reported with file:line:column."""

from __future__ import annotations

import hashlib
from collections.abc import Container
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node

from ..errors import ScenarioError, ScenarioInvalid
from .model import (
    DEFAULT_MAX_SECONDS,
    DEFAULT_MAX_STEPS,
    MAX_SECONDS_CEILING,
    MAX_STEPS_CEILING,
    GatherDefaults,
    Loc,
    Param,
    ParamType,
    Scenario,
)
from .reader import Items, Reader, suggest
from .steps import STEP_KINDS, Step
from .steps.base import ParseContext
from .steps.finish import Hangup
from .steps.gather import Gather, parse_dtmf_key
from .steps.play import Play
from .validate import validate

TOP_KEYS = ("scenario", "title", "description", "params", "limits", "defaults", "start",
            "on_hangup", "steps")
PARAM_KEYS = ("type", "required", "default", "pattern", "description")
STEP_COMMON_KEYS = ("next", "on", "description")
PLAY_STEP_KEYS = ("barge_in",)
GATHER_DEFAULT_KEYS = ("first_digit_timeout", "inter_digit_timeout", "total_timeout", "finish_key",
                       "barge_in")


def load_scenario(path: str | Path, *, prompts: Container[str] | None = None) -> Scenario:
    """Load and validate a scenario file; raises ScenarioInvalid listing every problem.

    ``prompts`` is the set of catalogue ids (None skips the prompt-id check).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioInvalid([ScenarioError(str(path), 1, 1, "unreadable",
                                             f"cannot read the file: {exc}")]) from exc
    return load_scenario_text(text, str(path), prompts=prompts, base_dir=path.parent)


def load_scenario_text(text: str, path: str = "<string>", *,
                       prompts: Container[str] | None = None,
                       base_dir: Path | None = None) -> Scenario:
    """Load and validate scenario YAML given as text (``path`` names it in errors)."""
    reader = Reader(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ScenarioInvalid([ScenarioError(path, line, column, "yaml-syntax",
                                             f"not valid YAML: {message}")]) from exc
    except yaml.YAMLError as exc:
        raise ScenarioInvalid([ScenarioError(path, 1, 1, "yaml-syntax",
                                             f"not valid YAML: {exc}")]) from exc
    if root is None:
        raise ScenarioInvalid([ScenarioError(path, 1, 1, "missing-key",
                                             "the file is empty; expected a scenario mapping")])
    scenario = _read(root, reader, prompts, base_dir)
    if reader.errors or scenario is None:
        raise ScenarioInvalid(reader.errors)
    scenario.source_sha256 = hashlib.sha256(text.encode()).hexdigest()
    return scenario


def _read(root: Node, r: Reader, prompts: Container[str] | None,
          base_dir: Path | None) -> Scenario | None:
    top = r.mapping(root, "scenario file")
    if top is None:
        return None
    r.check_keys(top, "scenario file", TOP_KEYS, required=("scenario", "steps"), owner=root)
    name = r.identifier(top["scenario"][1], "scenario") if "scenario" in top else None
    title = _optional_text(r, top, "title")
    description = _optional_text(r, top, "description")
    params = _params(r, top["params"][1]) if "params" in top else {}
    max_steps, max_seconds = _limits(r, top["limits"][1]) if "limits" in top else (
        DEFAULT_MAX_STEPS, DEFAULT_MAX_SECONDS)
    defaults = _defaults(r, top["defaults"][1]) if "defaults" in top else GatherDefaults()
    ctx = ParseContext(r, prompts, base_dir)
    all_ids: set[str] = set()
    steps = _steps(r, top["steps"][1], ctx, all_ids) if "steps" in top else {}
    for step in steps.values():
        if isinstance(step, Gather):
            step.finalize(defaults.first_digit_timeout, defaults.inter_digit_timeout,
                          defaults.total_timeout, defaults.finish_key, defaults.barge_in)
            missing = [name for name in ("first_digit_timeout", "inter_digit_timeout")
                       if getattr(step, name) is None]
            if missing:
                r.error(step.kind_node, "gather-without-timeouts",
                        f"step '{step.id}': gather has no {' and no '.join(missing)}; set it "
                        "here or in defaults.gather so the call cannot wait forever")
    start = _step_ref(r, top, "start", all_ids) if "start" in top else next(iter(steps), None)
    on_hangup = _step_ref(r, top, "on_hangup", all_ids) if "on_hangup" in top else None
    if "steps" in top and not steps and isinstance(top["steps"][1], MappingNode):
        r.error(top["steps"][1], "invalid-value", "steps: the scenario has no step")
    if name is None or start is None:
        return None
    scenario = Scenario(name=name, path=r.path, title=title, description=description,
                        params=params, steps=steps, start=start, on_hangup=on_hangup,
                        max_steps=max_steps, max_seconds=max_seconds, gather_defaults=defaults,
                        base_dir=base_dir)
    validate(scenario, ctx, all_ids)
    return scenario


def _optional_text(r: Reader, top: Items, key: str) -> str:
    return (r.text(top[key][1], key, allow_numbers=True) or "") if key in top else ""


def _step_ref(r: Reader, top: Items, key: str,
              steps: set[str]) -> str | None:
    node = top[key][1]
    target = r.text(node, key)
    if target is not None and target not in steps:
        if steps:  # with no step ids at all, the error about the steps section says why
            r.error(node, "unknown-target",
                    f"{key}: there is no step '{target}'{suggest(target, steps)}")
        return None
    return target


def _params(r: Reader, node: Node) -> dict[str, Param]:
    params: dict[str, Param] = {}
    for name, (key_node, value) in (r.mapping(node, "params") or {}).items():
        what = f"parameter '{name}'"
        if r.identifier(key_node, "parameter name") is None:
            continue
        if value.tag == "tag:yaml.org,2002:str" and not isinstance(value, MappingNode):
            # shorthand: `code: secret`
            value = MappingNode("tag:yaml.org,2002:map", [(
                yaml.ScalarNode("tag:yaml.org,2002:str", "type", value.start_mark, value.end_mark),
                value)], value.start_mark, value.end_mark)
        items = r.mapping(value, what)
        if items is None:
            continue
        r.check_keys(items, what, PARAM_KEYS, required=("type",), owner=key_node)
        if "type" not in items:
            continue
        type_node = items["type"][1]
        type_name = r.text(type_node, f"{what}.type")
        if type_name is None:
            continue
        try:
            ptype = ParamType(type_name)
        except ValueError:
            kinds = [t.value for t in ParamType]
            r.error(type_node, "unknown-param-type",
                    f"{what}: unknown type '{type_name}'{suggest(type_name, kinds)}; expected one "
                    f"of {', '.join(kinds)}")
            continue
        default: str | int | None = None
        if "default" in items:
            dnode = items["default"][1]
            if ptype.is_secret:
                r.error(dnode, "secret-in-output",
                        f"{what}: a {ptype.value} cannot have a default written in the scenario")
            elif ptype is ParamType.AMOUNT:
                default = r.integer(dnode, f"{what}.default", minimum=0)
            else:
                default = r.text(dnode, f"{what}.default", allow_numbers=True)
        required = default is None
        if "required" in items:
            flag = r.boolean(items["required"][1], f"{what}.required")
            required = bool(flag) if flag is not None else required
        pattern = r.pattern(items["pattern"][1], f"{what}.pattern") if "pattern" in items \
            else None
        description = (r.text(items["description"][1], f"{what}.description") or ""
                       ) if "description" in items else ""
        params[name] = Param(name, ptype, required, default, pattern, description,
                             Loc(key_node.start_mark.line + 1, key_node.start_mark.column + 1))
    return params


def _limits(r: Reader, node: Node) -> tuple[int, float]:
    items = r.mapping(node, "limits") or {}
    r.check_keys(items, "limits", ("max_steps", "max_seconds"))
    steps = (r.integer(items["max_steps"][1], "limits.max_steps", minimum=1,
                       maximum=MAX_STEPS_CEILING) if "max_steps" in items else None)
    seconds = (r.number(items["max_seconds"][1], "limits.max_seconds", positive=True,
                        maximum=MAX_SECONDS_CEILING) if "max_seconds" in items else None)
    return (steps or DEFAULT_MAX_STEPS, seconds or DEFAULT_MAX_SECONDS)


def _defaults(r: Reader, node: Node) -> GatherDefaults:
    items = r.mapping(node, "defaults") or {}
    r.check_keys(items, "defaults", ("gather",))
    if "gather" not in items:
        return GatherDefaults()
    g = r.mapping(items["gather"][1], "defaults.gather") or {}
    r.check_keys(g, "defaults.gather", GATHER_DEFAULT_KEYS)
    values: dict[str, object] = {}
    for key in ("first_digit_timeout", "inter_digit_timeout", "total_timeout"):
        if key in g:
            values[key] = r.number(g[key][1], f"defaults.gather.{key}", positive=True, maximum=600)
    if "finish_key" in g:
        values["finish_key"] = parse_dtmf_key(g["finish_key"][1], ParseContext(r, None, None),
                                              "defaults.gather.finish_key")
    if "barge_in" in g:
        values["barge_in"] = r.boolean(g["barge_in"][1], "defaults.gather.barge_in")
    return GatherDefaults(**values)  # type: ignore[arg-type]


def _steps(r: Reader, node: Node, ctx: ParseContext, all_ids: set[str]) -> dict[str, Step]:
    steps: dict[str, Step] = {}
    items = r.mapping(node, "steps", duplicate_code="duplicate-step")
    all_ids.update(items or {})
    for step_id, (key_node, value) in (items or {}).items():
        if r.identifier(key_node, "step id") is None:
            continue
        what = f"step '{step_id}'"
        body = r.mapping(value, what)
        if body is None:
            continue
        kinds = [k for k in body if k in STEP_KINDS]
        others = [k for k in body if k not in STEP_KINDS]
        if not kinds:
            unknown = [k for k in others if k not in STEP_COMMON_KEYS + PLAY_STEP_KEYS]
            guess = suggest(unknown[0], STEP_KINDS) if unknown else ""
            shown = f"'{unknown[0]}' is not a step kind{guess}" if unknown else "no kind given"
            r.error(body[unknown[0]][0] if unknown else key_node, "unknown-step-kind",
                    f"{what}: {shown}; expected one of {', '.join(STEP_KINDS)}")
            continue
        if len(kinds) > 1:
            r.error(body[kinds[1]][0], "multiple-step-kinds",
                    f"{what}: has several kinds ({', '.join(kinds)}); a step does one thing")
            continue
        cls = STEP_KINDS[kinds[0]]
        allowed = STEP_COMMON_KEYS + (PLAY_STEP_KEYS if cls is Play else ())
        r.check_keys({k: v for k, v in body.items() if k != kinds[0]}, what, allowed)
        step = cls(step_id, key_node)
        step.kind_node = body[kinds[0]][0]
        step.parse(body[kinds[0]][1], ctx)
        if cls is Play and "barge_in" in body:
            step.barge_in = bool(r.boolean(body["barge_in"][1], f"{what}.barge_in"))  # type: ignore[attr-defined]
        _transitions(r, step, body, what)
        steps[step_id] = step
    return steps


def _transitions(r: Reader, step: Step, body: Items, what: str) -> None:
    if isinstance(step, Hangup):
        step.has_next = "next" in body
    if "next" in body:
        target = r.text(body["next"][1], f"{what}.next")
        if target is not None:
            step.transitions["*"] = target
            step.transition_nodes["*"] = body["next"][1]
    if "on" in body:
        for outcome, (key_node, node) in (r.mapping(body["on"][1], f"{what}.on") or {}).items():
            target = r.text(node, f"{what}.on.{outcome}")
            if target is not None:
                step.transitions[outcome] = target
                step.transition_nodes[outcome] = node
                step.transition_nodes[f"key:{outcome}"] = key_node
