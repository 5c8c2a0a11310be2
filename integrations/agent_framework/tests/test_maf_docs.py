"""The offline block of docs/agent_framework.md runs and prints what the page says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "agent_framework.md"


def test_the_offline_block_runs_as_documented(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    offline = next(block for block in blocks if "class Scripted(" in block)
    exec(compile(offline, str(DOC), "exec"), {"__name__": "agent_framework_doc"})
    assert capsys.readouterr().out.splitlines() == ["done after 7 messages", "['veto', 'veto', 'veto']"]
