"""The offline example runs end to end, in both modes, without torch or the network."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "openhands_agent.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("openhands_agent_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the tool's generic types through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("mode", "answer", "verdicts"), [
    ("enforce", "final answer: Fixed tests/test_dates.py", {"fallback", "commit"}),
    ("audit", "final answer: I lost track of the failing test.", {"audit"}),
])
def test_example_runs_offline(example, tmp_path, capsys, mode, answer, verdicts):
    log = tmp_path / "audit.jsonl"
    assert example.main(["--mode", mode, "--audit-log", str(log)]) == 0
    out = capsys.readouterr().out
    assert answer in out and "condensations stored: 2" in out
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert {r["verdict"] for r in records} == verdicts
    assert all(r["mode"] == mode for r in records)
