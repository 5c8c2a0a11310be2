"""The offline example runs end to end: with the labelled scorer double, and with the default tiny random MemRM."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

HAS_HARNESS = importlib.util.find_spec("pydantic_ai_harness") is not None
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "pydantic_ai_agent.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("pydantic_ai_agent_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOKS = [
    pytest.param("compact_history", marks=pytest.mark.compact_history),
    pytest.param("before_model_request", marks=pytest.mark.skipif(not HAS_HARNESS, reason="needs pydantic-ai-harness")),
]


@pytest.mark.parametrize("hook", HOOKS)
@pytest.mark.parametrize(("mode", "answer"), [("enforce", "Done: fixed"), ("audit", "I lost track")])
def test_example_runs_offline(example, tmp_path, capsys, mode, answer, hook):
    log = tmp_path / "audit.jsonl"
    assert example.main(["--scorer", "oracle", "--mode", mode, "--audit-log", str(log), "--hook", hook]) == 0
    assert answer in capsys.readouterr().out
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records and ({r["verdict"] for r in records} == {"audit"}) == (mode == "audit")
    assert any(r["candidates"] and r["candidates"][0]["p_harmful"] == 0.97 for r in records)


@pytest.mark.slow
def test_example_default_path_scores_with_a_tiny_random_memrm(example, tmp_path, capsys):
    pytest.importorskip("torch", reason="the tiny random MemRM needs memguard[local]; the main venv runs this")
    log = tmp_path / "audit.jsonl"
    assert example.main(["--audit-log", str(log)]) == 0
    assert "tiny RANDOM MemRM" in capsys.readouterr().err
    records = [json.loads(line) for line in log.read_text().splitlines()]
    scored = [c["p_harmful"] for r in records for c in r["candidates"] if c["p_harmful"] is not None]
    assert scored and all(0.0 <= p <= 1.0 for p in scored)
    assert all(r["scorer"]["fingerprint"] for r in records)
