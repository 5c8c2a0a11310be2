"""The offline example runs end to end (scorer double; the tiny-RM path is the same wiring)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "openai_agents_agent.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("openai_agents_agent_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("mode", "last_turn"), [("enforce", "agent (0 lookup(s))"), ("audit", "agent (1 lookup(s))")])
def test_example_runs_offline(example, tmp_path, capsys, mode, last_turn):
    log = tmp_path / "audit.jsonl"
    assert example.main(["--scorer", "oracle", "--mode", mode, "--audit-log", str(log)]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-2].startswith(last_turn)  # the trim that hid the code: vetoed or kept
    records = [json.loads(line) for line in log.read_text().splitlines()]
    verdicts = [r["verdict"] for r in records]
    assert verdicts and (set(verdicts) == {"audit"}) == (mode == "audit")
    if mode == "enforce":
        assert verdicts[-1] == "veto" and "model calls: " in out
