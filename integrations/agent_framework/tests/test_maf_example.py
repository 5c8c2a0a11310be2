"""The offline example runs end to end: with the labelled scorer double, and with the default tiny random MemRM."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "agent_framework_agent.py"


@pytest.fixture(scope="module")
def example() -> Any:
    spec = importlib.util.spec_from_file_location("agent_framework_agent_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("mode", "answer"), [("enforce", "final answer: Done: fixed"), ("audit", "I lost track")])
def test_example_runs_offline(example: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str,
                              answer: str) -> None:
    log = tmp_path / "audit.jsonl"
    assert example.main(["--scorer", "oracle", "--mode", mode, "--audit-log", str(log)]) == 0
    assert answer in capsys.readouterr().out
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records and ({r["verdict"] for r in records} == {"audit"}) == (mode == "audit")
    assert any(r["candidates"] and r["candidates"][0]["p_harmful"] == 0.97 for r in records)
    if mode == "enforce":
        assert any(r["verdict"] == "fallback" and r["strategy"] == "tool_result" for r in records)


@pytest.mark.slow
@pytest.mark.local
def test_example_default_path_scores_with_a_tiny_random_memrm(example: Any, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    log = tmp_path / "audit.jsonl"
    assert example.main(["--audit-log", str(log)]) == 0
    assert "tiny RANDOM MemRM" in capsys.readouterr().err
    records = [json.loads(line) for line in log.read_text().splitlines()]
    scored = [c["p_harmful"] for r in records for c in r["candidates"] if c["p_harmful"] is not None]
    assert scored and all(0.0 <= p <= 1.0 for p in scored)
    assert all(r["scorer"]["fingerprint"] for r in records)
