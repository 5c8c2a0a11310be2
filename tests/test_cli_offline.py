"""End to end with the real loading path: `--offline` builds a tiny random MemRM and scores with it.

The model is built once per process (about 10 s on CPU), so both tests share it.
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

import memguard.cli as cli
from memguard.protocol import render_prompt
from memguard.report import read_audit

runner = CliRunner()


def test_score_offline(tmp_path):
    prompts = [
        render_prompt([{"role": "user", "content": f"task {i}"}], step=i, recorded="ls", proposed=f"cat f{i}.py",
                      perturbation="strategy_swap__mask")
        for i in range(3)
    ]  # fmt: skip
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "label": i % 2}) + "\n" for i, p in enumerate(prompts)))
    out = tmp_path / "scores.jsonl"
    result = runner.invoke(cli.app, ["score", str(data), "-o", str(out), "--offline"])
    assert result.exit_code == 0, result.output
    assert "tiny RANDOM model" in result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3
    assert all(0.0 < r["p_harmful"] < 1.0 and r["n_tokens"] > 40 for r in records)
    assert len({r["p_harmful"] for r in records}) == 3  # the prompts differ, so do the scores
    result = runner.invoke(cli.app, ["eval", str(out), "--bootstrap", "0"])
    assert result.exit_code == 0 and "AUROC" in result.output


def test_demo_offline_writes_an_audit_the_report_reads(tmp_path):
    audit = tmp_path / "audit.jsonl"
    result = runner.invoke(cli.app, ["demo", "--offline", "--trajectory", "17-marshmallow-code__marshmallow-1867",
                                     "--every", "5", "--audit", str(audit)])  # fmt: skip
    assert result.exit_code == 0, result.output
    decisions = read_audit(audit)
    assert [d.step for d in decisions] == [3, 8]
    assert all(d.strategy == "drop_middle" and d.p_harmful is not None for d in decisions)
    assert {d.verdict for d in decisions} <= {"commit", "fallback", "veto"}
    html = tmp_path / "report.html"
    result = runner.invoke(cli.app, ["report", str(audit), "-o", str(html)])
    assert result.exit_code == 0 and "2 decisions in 1 conversations" in result.output


def test_score_offline_rows_with_lone_surrogates(tmp_path):
    """The real tokenizer path: a row holding an escaped lone surrogate scores as its cleaned text
    (before, the tokenizer's TypeError aborted the whole file, even with --on-bad-line skip)."""
    def row(mark: str) -> str:
        return json.dumps({"prompt": render_prompt([{"role": "tool", "content": f"out{mark}put"}], step=1,
                                                   recorded="ls", proposed="cat a.py", perturbation="strategy_swap__mask"),
                           "trajectory_id": f"t{mark}"})

    data = tmp_path / "rows.jsonl"
    data.write_text(row("\ud800") + "\n" + row("\ufffd") + "\n")  # json.dumps escapes it: "\\ud800"
    assert "\\ud800" in data.read_text()
    out = tmp_path / "scores.jsonl"
    result = runner.invoke(cli.app, ["score", str(data), "-o", str(out), "--offline", "--on-bad-line", "skip"])
    assert result.exit_code == 0, result.output
    dirty, clean = [json.loads(line) for line in out.read_bytes().decode("utf-8").splitlines()]
    assert dirty["p_harmful"] == clean["p_harmful"] and dirty["n_tokens"] == clean["n_tokens"]
    assert dirty["trajectory_id"] == "t\ufffd"
