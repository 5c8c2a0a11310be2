"""The offline example runs end to end (scorer double; the tiny-RM path is the same wiring)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "langchain_agent.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("langchain_agent_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("mode", "answer"), [("enforce", "Done: fixed"), ("audit", "I lost track")])
def test_example_runs_offline(example, tmp_path, capsys, mode, answer):
    log = tmp_path / "audit.jsonl"
    assert example.main(["--scorer", "oracle", "--mode", mode, "--audit-log", str(log)]) == 0
    assert answer in capsys.readouterr().out
    verdicts = [json.loads(line)["verdict"] for line in log.read_text().splitlines()]
    assert verdicts and (set(verdicts) == {"audit"}) == (mode == "audit")
