"""The Python blocks of docs/pydantic_ai.md run, offline, at the end of the range this venv holds.

The page's blocks run in order and share their globals, as a reader would type them. A block
fenced ```` ```python requires="compact_history" ```` needs pydantic-ai-slim 2.78+; one fenced
``requires="harness"`` needs pydantic-ai-harness (2.62) and runs here where it is installed, though
the page's own environment (front matter ``test_env: pydantic_ai_latest``) skips it.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from pydantic_ai.capabilities import AbstractCapability

HAS_COMPACT_HISTORY = hasattr(AbstractCapability, "compact_history")
HAS_HARNESS = importlib.util.find_spec("pydantic_ai_harness") is not None

PAGE = Path(__file__).resolve().parents[3] / "docs" / "pydantic_ai.md"
BLOCK = re.compile(r"^```python(?P<info>[^\n]*)\n(?P<code>.*?)^```$", re.DOTALL | re.MULTILINE)
ATTRIBUTE = re.compile(r'(\w+)="([^"]*)"')


def blocks() -> list[tuple[int, dict[str, str], str]]:
    text = PAGE.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, dict(ATTRIBUTE.findall(m["info"])), m["code"])
            for m in BLOCK.finditer(text)]


def runs_here(attributes: dict[str, str]) -> bool:
    requires = attributes.get("requires")
    if requires == "compact_history":
        return HAS_COMPACT_HISTORY
    if requires == "harness":
        return HAS_HARNESS
    return attributes.get("test") != "skip"


def test_the_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the examples write their audit log here
    page_globals: dict[str, object] = {"__name__": "__main__"}
    ran = []
    for line, attributes, code in blocks():
        if runs_here(attributes):
            exec(compile("\n" * line + code, str(PAGE), "exec"), page_globals)  # the page, as a reader runs it
            ran.append(attributes.get("requires", "any"))
    assert "compact_history" in ran or "harness" in ran, f"no end-specific block of the page ran here: {ran}"
