"""The audit report: numbers, embedded images, defensive reading, and the CLI command."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

import memguard.cli as cli
from memguard.report import decision_from_json, read_audit, render_html, summarize

runner = CliRunner()


def synthetic_audit(n_conversations: int = 3, steps: int = 8, seed: int = 0) -> list[dict]:
    """Decisions shaped like the guard's, with known verdicts, timings and reasons."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_conversations):
        for step in range(steps):
            p = float(rng.random())
            verdict = "commit" if p < 0.3 else ("fallback" if p < 0.7 else "veto")
            candidates = [{"strategy": "summarize", "p_harmful": p, "band": "uncertain"}]
            reasons = [f"p_harmful {'<=' if p < 0.3 else '>'} threshold"]
            if verdict == "fallback":
                candidates.append({"strategy": "observation_masking", "p_harmful": 0.05, "band": "safe", "chosen": True})
                reasons.append("fallback observation_masking is safe")
            rows.append({
                "verdict": verdict, "strategy": "summarize", "step": step * 5,
                "conversation_id": f"conv-{c}", "mode": "enforce", "candidates": candidates,
                "reasons": reasons, "timestamp": f"2025-01-0{c + 1}T00:00:{step:02d}Z",
                "timings": {"probe": 0.2 + 0.01 * step, "render": 0.001, "score": 0.05 * (1 + c), "total": 0.3 + 0.05 * c},
            })  # fmt: skip
    return rows


def write_audit(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def images(page: str) -> list[np.ndarray]:
    return [imread(io.BytesIO(base64.b64decode(b64)), format="png")
            for b64 in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]  # fmt: skip


def test_summary_numbers():
    rows = synthetic_audit()
    decisions = [decision_from_json(r, i + 1) for i, r in enumerate(rows)]
    summary = summarize(decisions)
    expected = {v: sum(r["verdict"] == v for r in rows) for v in ("commit", "fallback", "veto")}
    assert summary.verdicts == {k: v for k, v in expected.items() if v}
    assert summary.n_decisions == 24 and summary.n_conversations == 3
    assert summary.fallback_strategies == {"observation_masking": expected["fallback"]}
    totals = [r["timings"]["total"] for r in rows]
    assert summary.latency_seconds["total"].p50 == pytest.approx(np.percentile(totals, 50))
    assert summary.latency_seconds["probe"].p99 == pytest.approx(np.percentile([r["timings"]["probe"] for r in rows], 99))
    assert summary.top_reasons[0][1] == max(
        sum(reason in r["reasons"] for r in rows) for reason in {x for r in rows for x in r["reasons"]}
    )
    vetoes = [r["candidates"][0]["p_harmful"] for r in rows if r["verdict"] == "veto"]
    assert summary.mean_p_harmful["veto"] == pytest.approx(np.mean(vetoes))
    assert summary.first_timestamp == "2025-01-01T00:00:00Z"


def test_html_embeds_decodable_plots_and_the_numbers():
    rows = synthetic_audit()
    decisions = [decision_from_json(r, i + 1) for i, r in enumerate(rows)]
    summary = summarize(decisions)
    page = render_html(decisions, summary)
    pngs = images(page)
    assert len(pngs) == 3
    for png in pngs:
        assert png.ndim == 3 and png.shape[0] > 200 and png.shape[1] > 500
        assert png[..., :3].std() > 0.05  # something is drawn, not a blank canvas
    assert f">{summary.verdicts['veto']}<" in page
    assert f"{summary.latency_seconds['total'].p50 * 1000:.1f}" in page
    assert "observation_masking" in page and "conversation conv-0" not in page  # titles are in the PNG
    assert "http://" not in page and "https://" not in page  # self-contained


def test_defensive_reading_of_odd_decisions():
    odd = [
        {},
        {"verdict": "VETO", "candidates": "not a list", "timings": {"total": "slow"}, "step": "7"},
        {"verdict": "error", "reasons": "scorer timed out", "timings": {"total": 2.0}},
        {"verdict": "commit", "p_harmful": 0.2, "candidates": [{"p_harmful": 0.9}], "step": True},
        {"verdict": "fallback", "chosen_strategy": {"name": "recent_window"}, "candidates": [None, 3]},
    ]
    decisions = [decision_from_json(r, i + 1) for i, r in enumerate(odd)]
    assert [d.verdict for d in decisions] == ["unknown", "veto", "error", "commit", "fallback"]
    assert decisions[1].step is None and decisions[1].timings == {} and decisions[3].step is None
    assert decisions[2].reasons == ["scorer timed out"]
    assert decisions[3].p_harmful == 0.2  # a top-level score wins over the candidates'
    assert decisions[4].chosen_strategy == "recent_window" and decisions[4].p_harmful is None
    summary = summarize(decisions)
    assert summary.n_unscored == 4 and summary.latency_seconds["total"].n == 1
    assert len(images(render_html(decisions, summary))) == 3  # still renders


def test_report_command(tmp_path):
    rows = synthetic_audit()
    audit = write_audit(tmp_path / "audit.jsonl", rows[:10] + ["{torn"] + rows[10:])
    out = tmp_path / "report.html"
    result = runner.invoke(cli.app, ["report", str(audit), "-o", str(out)])
    assert result.exit_code == 2 and "audit.jsonl:11: not valid JSON" in result.output and not out.exists()
    result = runner.invoke(cli.app, ["report", str(audit), "-o", str(out), "--on-bad-line", "skip"])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert len(images(page)) == 3 and "1 malformed lines skipped" in page
    assert "24 decisions in 3 conversations" in result.output and "latency (ms)" in result.output
    assert read_audit(audit, on_bad_line="skip")[10].line == 12


def test_report_on_empty_audit(tmp_path):
    result = runner.invoke(cli.app, ["report", str(write_audit(tmp_path / "a.jsonl", []))])
    assert result.exit_code == 2 and "no decisions" in result.output
