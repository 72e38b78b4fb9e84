"""Import hygiene: one seam between scenario and telephony.

The interpreter and its steps know nothing about SIP, Asterisk (AMI/AGI) or sockets: they talk to
``telephony.channel.Channel`` only. Telephony modules (the channel interface and its backends)
import nothing from ``scenario``. Imports are read with ``ast`` (every ``import`` in the file,
including those under ``if TYPE_CHECKING:`` and inside functions), relative ones resolved.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ars_engine

PACKAGE = Path(ars_engine.__file__).resolve().parent
SCENARIO_MODULES = sorted((PACKAGE / "scenario").rglob("*.py"))
TELEPHONY_MODULES = sorted(p for p in (PACKAGE / "telephony").glob("*.py"))

FORBIDDEN_IN_SCENARIO = (
    "ars_engine.telephony.sip",
    "ars_engine.telephony.ami",
    "ars_engine.telephony.agi",
    "ars_engine.telephony.asterisk",
    "ars_engine.telephony.embedded",
    "asterisk",
    "socket",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module a source imports, absolute; ``from a import b`` gives both ``a`` and
    ``a.b`` (``b`` may be a submodule)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def imports_of(path: Path) -> set[str]:
    return imported_names(path.read_text(encoding="utf-8"), module_name(path),
                          is_package=path.name == "__init__.py")


def matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


# -- the walker itself -----------------------------------------------------------------------------
def test_import_walker_resolves_relative_and_nested_imports() -> None:
    source = """
from __future__ import annotations
import socket as s
from ..telephony.sip import ua
from .. import errors
from .steps import gather
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from ..telephony import ami
def later():
    import asterisk.manager
"""
    names = imported_names(source, "ars_engine.scenario.interpreter")
    assert "socket" in names
    assert "ars_engine.telephony.sip" in names and "ars_engine.telephony.sip.ua" in names
    assert "ars_engine.errors" in names
    assert "ars_engine.scenario.steps.gather" in names
    assert "ars_engine.telephony.ami" in names
    assert "asterisk.manager" in names
    # In a package's __init__ "." is the package itself; in a step module ".." is scenario.
    assert "ars_engine.scenario.steps.gather" in imported_names(
        "from .steps import gather", "ars_engine.scenario", is_package=True)
    assert "ars_engine.telephony.sip" in imported_names(
        "from ...telephony.sip import ua", "ars_engine.scenario.steps.check")


def test_walker_sees_the_real_channel_import_of_the_scenario_package() -> None:
    # Not vacuous: the scenario package does import the channel seam, and the walker finds it.
    everything = set().union(*(imports_of(p) for p in SCENARIO_MODULES))
    assert any(matches(n, "ars_engine.telephony.channel") for n in everything)
    assert len(SCENARIO_MODULES) >= 10


# -- the rules -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", SCENARIO_MODULES,
                         ids=[str(p.relative_to(PACKAGE)) for p in SCENARIO_MODULES])
def test_scenario_module_imports_nothing_about_sip_asterisk_or_sockets(path: Path) -> None:
    bad = sorted(n for n in imports_of(path)
                 if any(matches(n, prefix) for prefix in FORBIDDEN_IN_SCENARIO))
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


def test_channel_interface_imports_nothing_from_scenario() -> None:
    channel = PACKAGE / "telephony" / "channel.py"
    bad = sorted(n for n in imports_of(channel) if matches(n, "ars_engine.scenario"))
    assert not bad, f"telephony/channel.py imports {bad}"


@pytest.mark.parametrize("path", TELEPHONY_MODULES,
                         ids=[str(p.relative_to(PACKAGE)) for p in TELEPHONY_MODULES])
def test_telephony_backend_imports_nothing_from_scenario(path: Path) -> None:
    bad = sorted(n for n in imports_of(path) if matches(n, "ars_engine.scenario"))
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


# -- sans-I/O cores (STYLE.md rule 1): no sockets, no event loop, no clock -------------------------
TELEPHONY = PACKAGE / "telephony"
SANS_IO_CORES = sorted(
    [TELEPHONY / "outcomes.py"]
    + [TELEPHONY / "sip" / f"{m}.py" for m in (
        "message", "headers", "uri", "grammar", "digest", "sdp", "transaction", "call", "uas",
        "keepalive", "reinvite", "session_update")]
    + [TELEPHONY / "rtp" / f"{m}.py" for m in ("packet", "rfc4733", "session")]
    + [TELEPHONY / "ami" / f"{m}.py" for m in ("__init__", "messages", "protocol", "events")]
    + [TELEPHONY / "agi" / f"{m}.py" for m in ("__init__", "commands", "events", "protocol",
                                                "replies")]
    # the service's decisions (STYLE.md: pure functions with table tests; time is passed in)
    + [PACKAGE / "service" / f"{m}.py" for m in ("policy", "signing", "backoff", "limits",
                                                  "seal", "payloads")])
IO_MODULES = ("asyncio", "socket", "selectors", "ssl", "threading", "time", "trio", "anyio")
# The asyncio edges of our own package: a core importing one would import asyncio through it.
IO_EDGES = ("ars_engine.telephony.sip.transport", "ars_engine.telephony.rtp.media",
            "ars_engine.telephony.rtp.pacer", "ars_engine.telephony.rtp.clock",
            "ars_engine.telephony.ami.client", "ars_engine.telephony.ami.originate",
            "ars_engine.telephony.agi.server", "ars_engine.telephony.agi.channel",
            "ars_engine.telephony.agi.sounds", "ars_engine.telephony.embedded",
            "ars_engine.telephony.asterisk")


def test_the_io_check_would_catch_a_relative_import_of_an_edge() -> None:
    names = imported_names("from .server import FastAgiServer", "ars_engine.telephony.agi.events")
    assert any(matches(n, edge) for n in names for edge in IO_EDGES)


@pytest.mark.parametrize("path", SANS_IO_CORES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_sans_io_core_imports_no_io_no_clock_and_no_asyncio_edge(path: Path) -> None:
    names = imports_of(path)
    bad = sorted(n for n in names if n.split(".")[0] in IO_MODULES
                 or any(matches(n, edge) for edge in IO_EDGES))
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"
    assert names  # the walk saw something (at least __future__)
