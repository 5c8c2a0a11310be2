"""The offline example runs end to end, in both modes, without torch, Google or the network."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "google_adk_agent.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("google_adk_agent_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# Older ADK summarizers leave tool output out of their prompt, so the fallback may not save the
# test's name either: then the guard vetoes instead. Either way the agent keeps track.
@pytest.mark.parametrize(("mode", "answer", "verdicts"), [
    ("enforce", "agent: Fixed tests/test_dates.py::test_leap_year.", {"fallback", "commit", "veto"}),
    ("audit", "agent: I lost track of the failing test.", {"audit"}),
])
def test_example_runs_offline(example, tmp_path, capsys, mode, answer, verdicts):
    log = tmp_path / "audit.jsonl"
    assert example.main(["--mode", mode, "--audit-log", str(log)]) == 0
    out = capsys.readouterr().out
    assert answer in out
    records = [json.loads(line) for line in log.read_text().splitlines()]
    seen = {r["verdict"] for r in records}
    assert seen <= verdicts and (mode == "audit" or seen & {"fallback", "veto"})
    assert {r["conversation_id"] for r in records} == {"ci-fix"}
    assert any(c["p_harmful"] == 0.97 for r in records for c in r["candidates"])
