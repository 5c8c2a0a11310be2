"""The examples run offline end to end (tiny random RM), and write what they say they write."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.trajdata import trajectory_paths

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.local  # builds the tiny random model
def test_custom_compaction_example_offline_scorer(tmp_path, capsys):
    example = load_example("custom_compaction")
    scorer = example.load_scorer(example.argparse.Namespace(base=None))
    assert "scores below are meaningless" in capsys.readouterr().out
    assert scorer.identity.fingerprint


def test_custom_compaction_example(tmp_path, capsys, monkeypatch, qwen_rm):
    example = load_example("custom_compaction")
    monkeypatch.setattr(example, "load_scorer", lambda args: qwen_rm)  # the session's tiny RM
    trajectory = next(p for p in trajectory_paths() if "pydicom" in p.name or "marshmallow" in p.name)
    audit = tmp_path / "audit.jsonl"
    assert example.main(["--trajectory", str(trajectory), "--audit", str(audit)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line[:4].strip().isdigit()]
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert len(records) == len(rows) > 0
    assert {r["verdict"] for r in records} <= {"commit", "fallback", "veto"}
    assert any(r["candidates"][0]["p_harmful"] is not None for r in records)  # the RM really scored
    assert all(r["scorer"]["fingerprint"] for r in records)


def test_replay_agent_forgets_without_recent_observations():
    example = load_example("custom_compaction")
    trajectory = json.loads(trajectory_paths()[0].read_text())["messages"]
    agent = example.ReplayAgent(trajectory)
    context = trajectory[:6]
    assert agent(context) == trajectory[6]
    assert "ls -la" in agent(example.my_summariser(context, keep_tail=1))["content"]


def test_custom_compaction_example_is_quiet_and_leaves_no_file(tmp_path, capsys, monkeypatch, qwen_rm):
    example = load_example("custom_compaction")
    monkeypatch.setattr(example, "load_scorer", lambda args: qwen_rm)
    monkeypatch.chdir(tmp_path)
    assert example.main([]) == 0
    assert list(tmp_path.iterdir()) == []  # no audit log unless --audit asks for one
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if line[:4].strip().isdigit()]
    assert lines and all(("P(HARMFUL)=" in line or "identical next action" in line or "skipped" in line
                          or "rejected" in line) for line in lines), lines
    assert "p_harmful=" not in captured.out and captured.err == ""



FRAMEWORK_EXAMPLES = {  # example -> the framework it needs (the others run in their own venvs' suites)
    "langchain_agent": "langchain",
    "pydantic_ai_agent": "pydantic_ai",
    "openai_agents_agent": "agents",
    "agent_framework_agent": "agent_framework",
}


@pytest.mark.local
@pytest.mark.parametrize("name", sorted(FRAMEWORK_EXAMPLES))
def test_framework_examples_are_quiet_readable_and_leave_no_file(name, tmp_path, capfd, monkeypatch):
    pytest.importorskip(FRAMEWORK_EXAMPLES[name])
    monkeypatch.chdir(tmp_path)
    assert load_example(name).main([]) == 0
    out, err = capfd.readouterr()
    assert list(tmp_path.iterdir()) == []  # no audit log unless --audit-log asks for one
    assert "memguard: " in out and "p_harmful=" not in out
    assert [line for line in err.splitlines() if line.strip()] == [
        "[offline] tiny RANDOM MemRM (scores are meaningless; --scorer oracle plays a labelled RM)"
    ], err  # no loading bars, no library warnings
