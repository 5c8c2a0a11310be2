"""The offline example runs end to end, in both modes and streamed, without torch, AWS or the network."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "strands_agent.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("strands_agent_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("options", "answer", "verdicts"), [
    ([], "final answer: Fixed tests/test_dates.py::test_leap_year.", {"fallback"}),
    (["--stream"], "final answer: Fixed tests/test_dates.py::test_leap_year.", {"fallback"}),
    (["--mode", "audit"], "final answer: I lost track of the failing test.", {"audit"}),
])
def test_example_runs_offline(example, tmp_path, capsys, options, answer, verdicts):
    log = tmp_path / "audit.jsonl"
    assert example.main([*options, "--audit-log", str(log)]) == 0
    assert answer in capsys.readouterr().out
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records and {r["verdict"] for r in records} == verdicts
    assert any(r["candidates"][0]["p_harmful"] == 0.97 for r in records)  # the summary was judged harmful


DOCS = Path(__file__).resolve().parents[3] / "docs" / "strands.md"


def test_the_docs_page_runs_offline(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(DOCS), "exec"), {"__name__": "strands_docs"})  # our own docs page
    out = capsys.readouterr().out
    assert "memguard: commit" in out and "messages kept" in out
