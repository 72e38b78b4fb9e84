"""Fixtures for the integration tests: a real Asterisk (tests/integration/asterisk_peer.py)."""

from __future__ import annotations

from collections.abc import Generator

import pytest
from asterisk_peer import FAILED_KEY, asterisk_peer

__all__ = ["asterisk_peer"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                        pytest.TestReport]:
    """Remember a failed test on its item, so fixtures can print their peer's logs."""
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED_KEY] = True
    return report
