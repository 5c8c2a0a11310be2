"""The `memguard` command through typer's CliRunner, with a fake scorer where scoring is needed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

import memguard.cli as cli
from memguard.config import load_config
from memguard.metrics import sweep_thresholds
from memguard.protocol import render_prompt
from memguard.scoring.base import Score

runner = CliRunner()


class FakeScorer:
    """P(HARMFUL) from a number hidden in the proposed action: "risk=0.83" -> 0.83."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def score(self, prompts: list[str]) -> list[Score]:
        self.calls.append(len(prompts))
        out = []
        for prompt in prompts:
            risk = float(prompt.split("risk=")[1].split()[0].rstrip("'\n"))
            out.append(Score(p_harmful=risk, n_tokens=len(prompt.split()), n_truncated=0))
        return out


def install_fake(monkeypatch) -> FakeScorer:
    """Replace the CLI's scorer factory by a FakeScorer that remembers the options it got."""
    scorer = FakeScorer()
    seen = {}

    def make(options):
        seen["options"] = options
        return scorer

    monkeypatch.setattr(cli, "make_scorer", make)
    scorer.seen = seen
    return scorer


@pytest.fixture
def fake(monkeypatch):
    return install_fake(monkeypatch)


def prompt_row(risk: float, label: int | None, **extra) -> dict:
    prompt = render_prompt(
        [{"role": "user", "content": "task"}], step=2, recorded="ls", proposed=f"echo risk={risk}",
        perturbation="strategy_swap__mask",
    )  # fmt: skip
    row = {"prompt": prompt, **extra}
    if label is not None:
        row["label"] = label
    return row


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def synthetic_rows(n: int = 60, seed: int = 0) -> tuple[list[float], list[int]]:
    rng = np.random.default_rng(seed)
    harmful = rng.random(n) < 0.7
    p = np.clip(np.where(harmful, 0.75, 0.3) + rng.normal(0, 0.2, n), 0.01, 0.99).round(3)
    return p.tolist(), [0 if h else 1 for h in harmful]


# --------------------------------------------------------------------------- score


def test_score_writes_scores_bands_and_token_counts(tmp_path, fake):
    data = write_jsonl(tmp_path / "rows.jsonl", [prompt_row(0.95, 0, id="a"), prompt_row(0.5, 1), prompt_row(0.02, None)])
    out = tmp_path / "scores.jsonl"
    result = runner.invoke(cli.app, ["score", str(data), "-o", str(out), "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["p_harmful"] for r in records] == [0.95, 0.5, 0.02]
    assert [r["band"] for r in records] == ["harmful", "uncertain", "safe"]
    assert records[0]["key"] == "id:a" and records[1]["key"].startswith("line:2:")
    assert records[0]["label"] == 0 and "label" not in records[2]
    assert all(r["n_tokens"] > 10 and r["n_truncated"] == 0 for r in records)
    assert fake.calls == [2, 1]
    assert "wrote 3 scores" in result.output


def test_score_resumes_and_repairs_a_torn_line(tmp_path, fake):
    rows = [prompt_row(0.1 * k, 1) for k in range(1, 6)]
    data = write_jsonl(tmp_path / "rows.jsonl", rows[:3])
    out = tmp_path / "scores.jsonl"
    assert runner.invoke(cli.app, ["score", str(data), "-o", str(out)]).exit_code == 0
    write_jsonl(data, rows)  # two rows added
    with open(out, "a") as fh:
        fh.write('{"key": "line:9:torn", "p_har')  # an interrupted write
    result = runner.invoke(cli.app, ["score", str(data), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "torn last line" in result.output and "3 of 5 rows already" in result.output
    assert fake.calls == [3, 2]
    lines = out.read_text().splitlines()
    assert len(lines) == 5 and len({json.loads(line)["key"] for line in lines}) == 5
    # everything done: no scorer is even loaded
    fake.seen.clear()
    result = runner.invoke(cli.app, ["score", str(data), "-o", str(out)])
    assert result.exit_code == 0 and "nothing to do" in result.output and not fake.seen
    # --restart starts over
    assert runner.invoke(cli.app, ["score", str(data), "-o", str(out), "--restart"]).exit_code == 0
    assert len(out.read_text().splitlines()) == 5 and fake.calls[-1] == 5


def test_score_refuses_to_append_to_a_foreign_file(tmp_path, fake):
    data = write_jsonl(tmp_path / "rows.jsonl", [prompt_row(0.2, 1)])
    out = write_jsonl(tmp_path / "other.jsonl", [{"something": "else"}])
    result = runner.invoke(cli.app, ["score", str(data), "-o", str(out)])
    assert result.exit_code == 2
    assert "other.jsonl:1: not a memguard score record" in result.output
    assert "Traceback" not in result.output


def test_score_bad_lines_stop_or_skip(tmp_path, fake):
    data = write_jsonl(tmp_path / "rows.jsonl", [prompt_row(0.2, 1), "{oops", {"prompt": "no suffix"}, prompt_row(0.7, 0)])
    out = tmp_path / "scores.jsonl"
    result = runner.invoke(cli.app, ["score", str(data), "-o", str(out)])
    assert result.exit_code == 2
    assert "rows.jsonl:2: not valid JSON" in result.output and not out.exists()
    result = runner.invoke(cli.app, ["score", str(data), "-o", str(out), "--on-bad-line", "skip"])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "rows.jsonl:3: prompt must be a string ending in" in result.output
    assert [json.loads(x)["line"] for x in out.read_text().splitlines()] == [1, 4]


def test_score_passes_scorer_options(tmp_path, fake):
    data = write_jsonl(tmp_path / "rows.jsonl", [prompt_row(0.2, 1)])
    args = ["score", str(data), "-o", str(tmp_path / "o.jsonl"), "--base", "/models/base", "--adapter", "/models/ad",
            "--subfolder", "", "--quantization", "nf4", "--max-length", "4096"]  # fmt: skip
    assert runner.invoke(cli.app, args).exit_code == 0
    settings = fake.seen["options"].settings()
    assert (settings.base, settings.adapter, settings.subfolder) == ("/models/base", "/models/ad", "")
    assert (settings.quantization, settings.max_length, settings.kind) == ("nf4", 4096, "local")
    assert runner.invoke(cli.app, [*args[:4], "--remote", "http://h:8000", "--restart"]).exit_code == 0
    assert fake.seen["options"].settings().url == "http://h:8000"


def test_missing_file_and_scorer_failures_are_messages(tmp_path, monkeypatch):
    result = runner.invoke(cli.app, ["score", str(tmp_path / "absent.jsonl"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "does not exist" in result.output
    data = write_jsonl(tmp_path / "rows.jsonl", [prompt_row(0.2, 1)])

    def broken(options):
        raise OSError("Incorrect path_or_model_id: '/nowhere'")

    monkeypatch.setattr(cli, "make_scorer", broken)
    result = runner.invoke(cli.app, ["score", str(data), "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "/nowhere" in result.output and "Traceback" not in result.output

    def explodes(options):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(cli, "make_scorer", explodes)
    result = runner.invoke(cli.app, ["score", str(data), "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1 and "cannot load the scorer: RuntimeError: CUDA out of memory" in result.output


def test_remote_scorer_missing_module_is_explained(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "memguard.scoring.remote", None)
    data = write_jsonl(tmp_path / "rows.jsonl", [prompt_row(0.2, 1)])
    result = runner.invoke(cli.app, ["score", str(data), "-o", str(tmp_path / "o.jsonl"), "--remote", "http://h:1"])
    assert result.exit_code == 1 and "remote scorer is not available" in result.output


# --------------------------------------------------------------------------- eval


def test_eval_on_a_scored_file(tmp_path, fake):
    p, labels = synthetic_rows()
    data = write_jsonl(tmp_path / "scored.jsonl", [{"p_harmful": x, "label": y} for x, y in zip(p, labels)])
    out = tmp_path / "metrics.json"
    result = runner.invoke(cli.app, ["eval", str(data), "--json", str(out), "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    auroc = roc_auc_score([y == 0 for y in labels], p)
    assert f"{auroc:.3f}" in result.output and "ECE" in result.output
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["auroc"] == pytest.approx(auroc) and metrics["n"] == 60
    assert metrics["auroc_ci"][0] < auroc < metrics["auroc_ci"][1]
    assert not fake.calls  # nothing needed scoring


def test_eval_scores_rows_without_scores(tmp_path, fake):
    data = write_jsonl(tmp_path / "rows.jsonl", [prompt_row(0.9, 0), prompt_row(0.2, 1), {"p_harmful": 0.4, "label": 0}])
    out = tmp_path / "m.json"
    result = runner.invoke(cli.app, ["eval", str(data), "--json", str(out), "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    assert fake.calls == [2]
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["accuracy"] == pytest.approx(2 / 3)  # 0.4 on a HARMFUL row is predicted SAFE
    assert metrics["auroc"] == 1.0


def test_eval_one_class_warns_instead_of_crashing(tmp_path):
    data = write_jsonl(tmp_path / "s.jsonl", [{"p_harmful": 0.9, "label": 0}, {"p_harmful": 0.3, "label": 0}])
    result = runner.invoke(cli.app, ["eval", str(data)])
    assert result.exit_code == 0, result.output
    assert "AUROC is undefined" in result.output


def test_eval_without_labels_fails_clearly(tmp_path):
    data = write_jsonl(tmp_path / "s.jsonl", [{"p_harmful": 0.9, "label": 0}, {"p_harmful": 0.3}, {"p_harmful": 0.2}])
    result = runner.invoke(cli.app, ["eval", str(data)])
    assert result.exit_code == 2
    assert "2 of 3 rows have no label (lines 2, 3)" in result.output and "Traceback" not in result.output


def test_eval_rows_with_nothing_to_score(tmp_path):
    data = write_jsonl(tmp_path / "s.jsonl", [{"label": 0}])
    result = runner.invoke(cli.app, ["eval", str(data)])
    assert result.exit_code == 2 and "s.jsonl:1: no prompt source" in result.output


# --------------------------------------------------------------------------- calibrate


def test_calibrate_writes_the_best_threshold(tmp_path):
    p, labels = synthetic_rows(n=200, seed=4)
    data = write_jsonl(tmp_path / "scored.jsonl", [{"p_harmful": x, "label": y} for x, y in zip(p, labels)])
    base = tmp_path / "base.toml"
    base.write_text('[guard]\nmode = "audit"\nfallbacks = ["recent_window"]\n')
    out = tmp_path / "guard.toml"
    curve = tmp_path / "curve.json"
    result = runner.invoke(cli.app, ["calibrate", str(data), "-o", str(out), "--config", str(base),
                                     "--min", "0.8", "--curve", str(curve)])  # fmt: skip
    assert result.exit_code == 0, result.output
    expected = sweep_thresholds(p, [y == 0 for y in labels], constraint_min=0.8).best
    config = load_config(out)
    assert config.guard.threshold == pytest.approx(1 - expected.t)
    assert config.guard.mode == "audit" and [f.name for f in config.guard.fallbacks] == ["recent_window"]
    assert f"t = {expected.t:.2f}" in out.read_text()
    assert len(json.loads(curve.read_text())["points"]) == 91
    assert f"{expected.safe_f1:.3f}" in result.output


def test_a_calibrated_config_decides_by_its_threshold(tmp_path):
    """calibrate -> TOML -> Guard.from_config: the guard commits exactly what the sweep called SAFE."""
    from memguard import CompactionEvent, Guard, Verdict

    from tests.doubles import FactPolicy, ValueScorer, swe_conversation

    # SAFE rows sit at P(HARMFUL) <= 0.25, HARMFUL ones at >= 0.30: the best cut is far below 0.5.
    rows = [{"p_harmful": round(0.05 + 0.01 * k, 2), "label": 1} for k in range(21)]
    rows += [{"p_harmful": round(0.30 + 0.01 * k, 2), "label": 0} for k in range(60)]
    data = write_jsonl(tmp_path / "scored.jsonl", rows)
    out = tmp_path / "guard.toml"
    assert runner.invoke(cli.app, ["calibrate", str(data), "-o", str(out)]).exit_code == 0
    best = sweep_thresholds([r["p_harmful"] for r in rows], [r["label"] == 0 for r in rows]).best
    assert load_config(out).guard.threshold == best.threshold < 0.5

    before = swe_conversation(8, fact="FACT-42")
    candidate = [*before[:2], {"role": "user", "content": "[Summary] files were read"}, *before[-2:]]
    for p in (0.25, best.threshold - 0.01, best.threshold, 0.35, 0.45):
        guard = Guard.from_config(out, scorer=ValueScorer(p))
        decision = guard.review(CompactionEvent(before=before, candidate=candidate), FactPolicy("FACT-42"))
        assert decision.verdict is (Verdict.COMMIT if p < best.threshold else Verdict.VETO), p
        # The default threshold (0.5) would have committed every one of these scores.
        assert Guard(ValueScorer(p)).review(CompactionEvent(before=before, candidate=candidate),
                                            FactPolicy("FACT-42")).verdict is Verdict.COMMIT


def test_calibrate_without_output_prints_toml(tmp_path):
    data = write_jsonl(tmp_path / "s.jsonl", [{"p_harmful": 0.1, "label": 1}, {"p_harmful": 0.9, "label": 0}])
    result = runner.invoke(cli.app, ["calibrate", str(data)])
    assert result.exit_code == 0, result.output
    assert "[guard]" in result.stdout and "threshold = " in result.stdout


def test_calibrate_when_nothing_meets_the_constraint(tmp_path):
    data = write_jsonl(tmp_path / "s.jsonl", [{"p_harmful": 0.9, "label": 1}, {"p_harmful": 0.1, "label": 0}])
    out = tmp_path / "g.toml"
    result = runner.invoke(cli.app, ["calibrate", str(data), "-o", str(out)])
    assert result.exit_code == 1 and "no threshold reaches harmful_f1 >= 0.9" in result.output
    assert not out.exists()


def test_calibrate_rejects_a_bad_config(tmp_path):
    data = write_jsonl(tmp_path / "s.jsonl", [{"p_harmful": 0.1, "label": 1}])
    bad = tmp_path / "bad.toml"
    bad.write_text("[guard]\nthreshhold = 0.3\n")
    result = runner.invoke(cli.app, ["calibrate", str(data), "--config", str(bad)])
    assert result.exit_code == 2 and "guard.threshhold: unknown key" in result.output
