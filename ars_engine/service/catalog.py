"""The scenarios a service offers: every ``scenarios/*.yaml``, loaded and validated once at start,
each with its interpreter (which keeps the pre-rendered static prompts across calls)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ArsError, ScenarioInvalid

if TYPE_CHECKING:
    from ..media.library import MediaLibrary
    from ..scenario.interpreter import Interpreter
    from ..scenario.model import Scenario

log = logging.getLogger("ars_engine.service")


@dataclass(slots=True)
class ScenarioCatalog:
    """name → scenario; ``problems`` lists the files that failed to load (they are not offered)."""

    scenarios: dict[str, Scenario]
    media: MediaLibrary | None = None
    problems: dict[str, str] = field(default_factory=dict)
    _interpreters: dict[str, Interpreter] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path, media: MediaLibrary | None) -> ScenarioCatalog:
        from ..scenario.loader import load_scenario

        prompts = media.catalogue if media is not None else None
        found: dict[str, Scenario] = {}
        problems: dict[str, str] = {}
        for path in sorted(directory.glob("*.yaml")):
            try:
                scenario = load_scenario(path, prompts=prompts)
            except (ScenarioInvalid, ArsError) as exc:
                problems[path.name] = str(exc)
                log.error("scenario %s not offered: %s", path.name, exc)
                continue
            if scenario.name in found:
                problems[path.name] = f"scenario name {scenario.name!r} is used twice"
                continue
            found[scenario.name] = scenario
        return cls(found, media, problems)

    def get(self, name: str) -> Scenario | None:
        return self.scenarios.get(name)

    def interpreter(self, name: str) -> Interpreter:
        from ..scenario.interpreter import Interpreter

        if name not in self._interpreters:
            assert self.media is not None, "a catalogue without media cannot run calls"
            self._interpreters[name] = Interpreter(self.scenarios[name], self.media)
        return self._interpreters[name]


def describe_scenario(scenario: Scenario) -> dict[str, Any]:
    """The public description of a scenario (GET /v1/scenarios)."""
    return {
        "name": scenario.name,
        "title": scenario.title,
        "description": scenario.description,
        "sha256": scenario.source_sha256,
        "params": [{"name": p.name, "type": p.type.value, "required": p.required,
                    "secret": p.type.is_secret, "description": p.description,
                    **({"default": p.default} if p.default is not None else {})}
                   for p in scenario.params.values()],
        "steps": len(scenario.steps),
        "max_seconds": scenario.max_seconds,
    }
