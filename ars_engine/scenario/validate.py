"""Whole-scenario checks: transitions, reachability, bounded loops, variables and secrets.

Rules (each error code is documented in docs/scenarios.md):

* every outcome a step can produce leads to an existing step (``missing-transition``,
  ``unknown-target``); terminal steps (finish, hangup without next) have no transitions;
* every step is reachable from ``start`` or ``on_hangup`` (``unreachable-step``);
* every cycle passes through the ``again`` edge of a retry step, whose visits are counted
  (``unbounded-cycle``), so with the step bound no call runs forever;
* variables are declared, used with a fitting type, and secrets (``secret``/``hash`` parameters,
  secret gathers and what is built from them) reach only digit clips and checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .parsing import ParseContext, Use
from .reader import suggest
from .steps.check import Check
from .steps.gather import Gather
from .steps.retry import Retry

if TYPE_CHECKING:
    from .model import Scenario
    from .steps.base import Step

BUILTIN_VARIABLES = ("call_id", "scenario", "last_outcome", "last_input")


def validate(scenario: Scenario, ctx: ParseContext, all_ids: set[str] | None = None) -> None:
    """Add every problem of ``scenario`` to ``ctx.reader.errors``.

    ``all_ids`` holds every step id written, including steps that failed to parse: a transition
    to one of those is not reported again as an unknown target.
    """
    all_ids = set(scenario.steps) if all_ids is None else all_ids
    before = len(ctx.reader.errors)
    _transitions(scenario, ctx, all_ids)
    complete = len(ctx.reader.errors) == before and all_ids == set(scenario.steps)
    if complete:
        # Reachability and cycles on a broken graph would only repeat the same problem.
        _reachability(scenario, ctx)
        _cycles(scenario, ctx)
    _variables(scenario, ctx)


def _transitions(scenario: Scenario, ctx: ParseContext, all_ids: set[str]) -> None:
    r = ctx.reader
    steps = scenario.steps
    for step in steps.values():
        outcomes = step.outcomes()
        what = f"step '{step.id}'"
        if step.terminal and step.transitions:
            node = step.transition_nodes.get("*") or next(iter(step.transition_nodes.values()))
            r.error(node, "invalid-value",
                    f"{what}: a {step.kind} step ends the call, so it takes no next/on")
            continue
        for outcome in step.transitions:
            if outcome != "*" and outcome not in outcomes:
                r.error(step.transition_nodes[f"key:{outcome}"], "unknown-key",
                        f"{what}: '{outcome}' is not an outcome of {step.kind}"
                        f"{suggest(outcome, outcomes)}; its outcomes are {', '.join(outcomes)}")
        internal = step.internal_targets()
        resolved: dict[str, str] = {}
        for outcome in outcomes:
            if outcome in internal:
                target, node = internal[outcome]
            elif outcome in step.transitions:
                target, node = step.transitions[outcome], step.transition_nodes[outcome]
            elif "*" in step.transitions:
                target, node = step.transitions["*"], step.transition_nodes["*"]
            else:
                r.error(step.kind_node, "missing-transition",
                        f"{what}: outcome '{outcome}' of {step.kind} leads nowhere; add "
                        f"on: {{{outcome}: <step>}} or next: <step>")
                continue
            if target not in steps:
                if target in all_ids:
                    continue  # that step has its own error already
                r.error(node, "unknown-target",
                        f"{what}: there is no step '{target}'{suggest(target, steps)}")
                continue
            resolved[outcome] = target
        step.transitions = resolved


def _edges(step: Step, *, bounded: bool) -> list[str]:
    """Targets of a step; with ``bounded`` the counted ``again`` edge of a retry is left out."""
    if bounded and isinstance(step, Retry):
        return [t for o, t in step.transitions.items() if o != "again"]
    return list(step.transitions.values())


def _reachability(scenario: Scenario, ctx: ParseContext) -> None:
    roots = [scenario.start] + ([scenario.on_hangup] if scenario.on_hangup else [])
    seen = set(roots)
    todo = list(roots)
    while todo:
        for target in _edges(scenario.steps[todo.pop()], bounded=False):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    for step in scenario.steps.values():
        if step.id not in seen:
            ctx.reader.error(step.node, "unreachable-step",
                             f"step '{step.id}' is never reached from start '{scenario.start}'")


def _cycles(scenario: Scenario, ctx: ParseContext) -> None:
    """Tarjan's strongly connected components on the graph without counted retry edges."""
    steps = scenario.steps
    order = {sid: i for i, sid in enumerate(steps)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in steps:
        if root in index:
            continue
        # Iterative DFS: (node, iterator over its targets)
        work = [(root, iter(_edges(steps[root], bounded=True)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            advanced = False
            for target in targets:
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(_edges(steps[target], bounded=True))))
                    advanced = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                looped = len(component) > 1 or node in _edges(steps[node], bounded=True)
                if looped:
                    components.append(sorted(component, key=order.__getitem__))
    for component in components:
        first = steps[component[0]]
        path = " → ".join([*component, component[0]])
        ctx.reader.error(first.node, "unbounded-cycle",
                         f"steps {path} form a loop with no retry bound; send the loop through "
                         "a retry step (retry: {max: N, again: …, exhausted: …})")


def _variables(scenario: Scenario, ctx: ParseContext) -> None:
    r = ctx.reader
    types = {name: p.type.value for name, p in scenario.params.items()}
    secret = {name for name, p in scenario.params.items() if p.type.is_secret}
    defined = set(types) | set(BUILTIN_VARIABLES)
    for d in ctx.defs:
        defined.add(d.name)
        types.setdefault(d.name, "digits" if d.source == "gather" else "text")
        if d.secret:
            secret.add(d.name)
    if any(d.secret for d in ctx.defs if d.source == "gather"):
        secret.add("last_input")
    # Secrecy flows through set: iterate to a fixed point.
    changed = True
    while changed:
        changed = False
        for u in ctx.uses:
            if u.use is Use.SET and u.name in secret and u.target and u.target not in secret:
                secret.add(u.target)
                changed = True
    for u in ctx.uses:
        if u.name not in defined:
            r.error(u.node, "undeclared-variable",
                    f"'{u.name}' is not declared{suggest(u.name, defined)}; declare it under "
                    "params, or set it with set:/gather into:")
            continue
        kind = types.get(u.name, "text")
        if u.name in secret and u.use is Use.TTS:
            r.error(u.node, "secret-in-tts",
                    f"'{u.name}' is a secret and would be sent to a TTS engine; speak it with "
                    f"digits: \"{{{u.name}}}\" (pre-rendered clips) instead")
        elif u.name in secret and u.use in (Use.OUTPUT, Use.BRANCH):
            r.error(u.node, "secret-in-output",
                    f"'{u.name}' is a secret and cannot appear in results, webhook data, URLs "
                    "or branches")
        elif u.use is Use.AMOUNT and kind not in ("amount", "digits"):
            r.error(u.node, "type-mismatch",
                    f"'{u.name}' is {kind}; amount: needs an amount (or digits) parameter")
        elif u.use is Use.DIGITS and kind not in ("digits", "secret", "amount"):
            r.error(u.node, "type-mismatch",
                    f"'{u.name}' is {kind}; digits: needs digits or a secret")
        elif u.use is Use.CHECK_HASH and kind != "hash":
            r.error(u.node, "type-mismatch",
                    f"'{u.name}' is {kind}; check hash: needs a parameter of type hash")
        elif kind == "hash" and u.use not in (Use.CHECK_HASH,):
            r.error(u.node, "type-mismatch",
                    f"'{u.name}' is a hash; it can only be used with check hash:")
    # A gather compared with a secret must itself be secret, so its keys are masked.
    gathers = {s.into: s for s in scenario.steps.values() if isinstance(s, Gather) and s.into}
    for step in scenario.steps.values():
        if not isinstance(step, Check) or step.input is None or step.against is None:
            continue
        gather = gathers.get(step.input)
        if gather is not None and step.against in secret and step.input not in secret:
            r.error(gather.kind_node, "secret-input-unmasked",
                    f"step '{gather.id}': '{step.input}' is compared with the secret "
                    f"'{step.against}' in step '{step.id}'; mark the gather secret: true so its "
                    "keys are masked")
