"""The fault tests measure figures (vends, audit rows, losses); they are shown in the run's summary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

FIGURES: list[str] = []


@pytest.fixture
def figures() -> Callable[[str], None]:
    return FIGURES.append


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.write_sep("-", "resilience figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
