"""A session-wide tally of what the hardening tests tried, printed at the end of every run.

Tests add to it (`count("faults tried")`, `note("max audit caller latency", "3.1 ms")`); the
`pytest_terminal_summary` hook in conftest.py prints it, so the figures behind the guarantees
(docs/guarantees.md) show in plain `pytest -q` output, with or without `-s`.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_counts: dict[str, int] = {}
_notes: dict[str, Any] = {}


def count(key: str, n: int = 1) -> None:
    with _lock:
        _counts[key] = _counts.get(key, 0) + n


def note(key: str, value: Any) -> None:
    with _lock:
        _notes[key] = value


def lines() -> list[str]:
    with _lock:
        out = [f"{key}: {value}" for key, value in sorted(_counts.items())]
        out += [f"{key}: {value}" for key, value in sorted(_notes.items())]
    return out
