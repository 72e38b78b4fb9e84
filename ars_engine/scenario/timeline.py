"""A call's timeline and result: what happened, when (ms since answer), with secrets masked."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One thing that happened. ``detail`` values are plain JSON and never hold a secret."""

    t_ms: int
    kind: str  # prompt_started, prompt_ended, key, gather_ended, check, retry, webhook, ...
    step: str
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"t_ms": self.t_ms, "kind": self.kind, "step": self.step, **self.detail}

    def describe(self) -> str:
        """One readable line: '  1.234s  ask         key 5'."""
        return f"{self.t_ms / 1000:8.3f}s  {self.step:<16} {self.what()}"

    def what(self) -> str:
        """What happened, without time or step: '▶ 안녕하세요…', 'key 5'."""
        d = self.detail
        if self.kind == "prompt_started":
            text = f"▶ {d.get('text', '')}"
        elif self.kind == "prompt_ended":
            how = "interrupted by a key" if d.get("interrupted") else "ended"
            text = f"■ prompt {how} after {d.get('played_ms', 0)} ms"
        elif self.kind == "key":
            text = f"key {d.get('key')}"
        else:
            rest = " ".join(f"{k}={v}" for k, v in d.items())
            text = f"{self.kind} {rest}".rstrip()
        return text


@dataclass(slots=True)
class CallResult:
    """What a scenario run produced. Secrets are already masked in every field."""

    call_id: str
    scenario: str
    outcome: str
    result: dict[str, Any]
    timeline: list[TimelineEvent]
    steps: int
    duration_ms: int
    recordings: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "scenario": self.scenario,
            "outcome": self.outcome,
            "result": self.result,
            "steps": self.steps,
            "duration_ms": self.duration_ms,
            "recordings": self.recordings,
            "error": self.error,
            "timeline": [e.as_dict() for e in self.timeline],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, **kwargs)

    def describe(self) -> str:
        lines = [e.describe() for e in self.timeline]
        lines.append(f"outcome: {self.outcome}  result: "
                     f"{json.dumps(self.result, ensure_ascii=False)}  "
                     f"({self.steps} steps, {self.duration_ms / 1000:.3f} s)")
        if self.error:
            lines.append(f"error: {self.error}")
        return "\n".join(lines)
