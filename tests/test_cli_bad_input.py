"""The `memguard` command on hostile input: nested JSON, rich markup, lone surrogates, its own
output as input, NaN scores, duplicate ids, credentials and secrets in options.

Every case ends in a one-line message (exit 2 for bad input, 1 for a failure while running) or a
correct result; none shows a traceback, interprets the user's text as markup, or loses data.
"""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

import memguard.cli as cli
from memguard.scoring.base import Score
from tests.test_cli import install_fake, prompt_row, write_jsonl

runner = CliRunner()
NESTED = "[" * 100_000 + "]" * 100_000


@pytest.fixture
def fake(monkeypatch):
    return install_fake(monkeypatch)


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


# ------------------------------------------------------------------------------ nested JSON


@pytest.mark.parametrize("command", ["score", "eval"])
def test_a_deeply_nested_line_is_a_bad_line(tmp_path, fake, command):
    data = write_jsonl(tmp_path / "rows.jsonl", [prompt_row(0.2, 1), NESTED, prompt_row(0.8, 0)])
    args = [command, str(data)] + (["-o", str(tmp_path / "o.jsonl")] if command == "score" else [])
    line = one_line_error(runner.invoke(cli.app, args))
    assert "rows.jsonl:2: JSON nested too deeply to read" in line
    result = runner.invoke(cli.app, [*args, "--on-bad-line", "skip"])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "rows.jsonl:2" in result.output
    assert fake.calls == [2]


def test_a_line_that_is_not_utf8_is_a_bad_line(tmp_path, fake):
    data = tmp_path / "rows.jsonl"
    data.write_bytes(json.dumps(prompt_row(0.2, 1)).encode() + b"\n\xff\xfe{}\n")
    line = one_line_error(runner.invoke(cli.app, ["score", str(data), "-o", str(tmp_path / "o.jsonl")]))
    assert "rows.jsonl:2: not UTF-8 text (byte 0xff at column 1)" in line
    result = runner.invoke(cli.app, ["score", str(data), "-o", str(tmp_path / "o.jsonl"), "--on-bad-line", "skip"])
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------------------ markup


def test_markup_in_the_input_is_shown_not_interpreted(tmp_path, fake):
    data = write_jsonl(tmp_path / "rows.jsonl", [prompt_row(0.2, 1), {**prompt_row(0.3, 1), "label": "[/x]"}])
    line = one_line_error(runner.invoke(cli.app, ["score", str(data), "-o", str(tmp_path / "o.jsonl")]))
    assert "got '[/x]'" in line
    odd = tmp_path / "[bold]odd"
    odd.mkdir()
    rows = [{**prompt_row(0.2, 1), "id": "[red]a"}, {**prompt_row(0.6, 0), "id": "[red]a"}]
    data = write_jsonl(odd / "rows.jsonl", rows)
    result = runner.invoke(cli.app, ["score", str(data), "-o", str(odd / "o.jsonl")])
    assert result.exit_code == 0, result.output
    assert "[bold]odd" in result.output and "'[red]a'" in result.output


def test_report_shows_markup_and_mathtext_as_text(tmp_path):
    rows = [{"verdict": "veto", "conversation_id": "cost $x^{$ and $\\frac{", "step": 1, "p_harmful": 0.7,
             "reasons": ["[/x] P(HARMFUL)=0.70 [bold]"], "timings": {"[/t]$a^$": 0.1}},
            {"verdict": "[/v]$$", "conversation_id": "$", "step": 2, "p_harmful": 0.2}]
    log = write_jsonl(tmp_path / "audit.jsonl", rows)
    result = runner.invoke(cli.app, ["report", str(log), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "[/x] P(HARMFUL)=# [bold]" in result.output and "[/v]$$" in result.output
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "[/x] P(HARMFUL)=# [bold]" in page


# ------------------------------------------------------------------------------ surrogates


def test_rows_with_lone_surrogates_are_scored_and_written_as_utf8(tmp_path, fake):
    data = tmp_path / "rows.jsonl"
    dirty = {**prompt_row(0.4, 1), "trajectory_id": "t\ud800", "perturbation": "p\udcff"}
    data.write_text(json.dumps(dirty) + "\n")  # escaped: "\\ud800"
    raw = {**prompt_row(0.5, 0), "trajectory_id": "raw\ud83d"}
    with open(data, "ab") as fh:  # and one written raw, as errors="surrogatepass" does
        fh.write(json.dumps(raw, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n")
    out = tmp_path / "o.jsonl"
    result = runner.invoke(cli.app, ["score", str(data), "-o", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_bytes().decode("utf-8").splitlines()]
    assert [r["trajectory_id"] for r in records] == ["t\ufffd", "raw\ufffd"]
    assert records[0]["perturbation"] == "p\ufffd"


def test_messages_quoting_lone_surrogates_print(tmp_path, fake):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({**prompt_row(0.4, 1), "label": "\ud800[/x]"}) + "\n")
    line = one_line_error(runner.invoke(cli.app, ["score", str(data), "-o", str(tmp_path / "o.jsonl")]))
    assert "got '\ufffd[/x]'" in line


# ------------------------------------------------------------------------------ the input is never lost


@pytest.mark.parametrize("restart", [False, True])
def test_score_refuses_to_write_over_its_input(tmp_path, fake, restart):
    data = write_jsonl(tmp_path / "rows.jsonl", [prompt_row(0.2, 1), prompt_row(0.7, 0)])
    before = data.read_bytes()
    args = ["score", str(data), "-o", str(tmp_path / "." / "rows.jsonl")] + (["--restart"] if restart else [])
    line = one_line_error(runner.invoke(cli.app, args))
    assert "is the input file: choose another --output" in line and "--restart" not in line
    assert data.read_bytes() == before and not fake.calls
    link = tmp_path / "link.jsonl"
    link.hardlink_to(data)
    one_line_error(runner.invoke(cli.app, ["score", str(data), "-o", str(link), "--restart"]))
    assert data.read_bytes() == before


# ------------------------------------------------------------------------------ NaN is never a score


class NaNScorer:
    def score(self, prompts):
        return [Score(p_harmful=0.3 if i else math.nan, n_tokens=1) for i, _ in enumerate(prompts)]


def test_a_nan_score_fails_the_run_and_is_never_written(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "make_scorer", lambda options: NaNScorer())
    data = write_jsonl(tmp_path / "rows.jsonl", [prompt_row(0.2, 1), prompt_row(0.7, 0)])
    out = tmp_path / "o.jsonl"
    line = one_line_error(runner.invoke(cli.app, ["score", str(data), "-o", str(out), "--batch-size", "1"]), code=1)
    assert "NonFiniteScoreError" in line and "line 1" in line
    assert not out.exists() or "NaN" not in out.read_text()
    line = one_line_error(runner.invoke(cli.app, ["eval", str(data)]), code=1)
    assert "NonFiniteScoreError" in line


# ------------------------------------------------------------------------------ duplicate ids


def test_eval_with_duplicate_ids_scores_every_row(tmp_path, fake):
    """Two splits concatenated: ids 0..n twice. Before, rows sharing an id shared one score, so a
    perfect scorer reported AUROC 0.5."""
    rows = [{**prompt_row(0.9 if label == 0 else 0.1, label), "id": i} for i, label in enumerate([0, 1, 0, 1])]
    rows += [{**prompt_row(0.1 if label == 1 else 0.9, label), "id": i} for i, label in enumerate([1, 0, 1, 0])]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    out = tmp_path / "m.json"
    result = runner.invoke(cli.app, ["eval", str(data), "--json", str(out), "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["metrics"]["auroc"] == 1.0
    assert "4 id(s) are used by more than one row" in result.output
    # calibrate reads the same scores: a perfect separation
    result = runner.invoke(cli.app, ["calibrate", str(data), "--curve", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "c.json").read_text())["best"]["safe_f1"] == 1.0


def test_score_keeps_rows_with_duplicate_ids_apart(tmp_path, fake):
    rows = [{**prompt_row(0.2, 1), "id": "x"}, {**prompt_row(0.8, 0), "id": "x"}, {**prompt_row(0.5, 0), "id": "y"}]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    out = tmp_path / "o.jsonl"
    assert runner.invoke(cli.app, ["score", str(data), "-o", str(out)]).exit_code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["p_harmful"] for r in records] == [0.2, 0.8, 0.5]
    assert records[2]["key"] == "id:y" and len({r["key"] for r in records}) == 3
    result = runner.invoke(cli.app, ["score", str(data), "-o", str(out)])  # resumes: nothing left
    assert result.exit_code == 0 and "nothing to do" in result.output


# ------------------------------------------------------------------------------ scorer options


def test_every_scorer_option_reaches_the_settings(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("MEMGUARD_TEST_RM_KEY", "sk-do-not-print-9f8e7d")
    data = write_jsonl(tmp_path / "rows.jsonl", [prompt_row(0.2, 1)])
    out = str(tmp_path / "o.jsonl")
    local = ["score", str(data), "-o", out, "--adapter-revision", "a1b2", "--base-revision", "c3d4", "--force",
             "--quantization", "none", "--cut", "shared", "--cut-block", "128", "--max-length", "4096",
             "--dtype", "bfloat16", "--device", "cpu"]
    assert runner.invoke(cli.app, local).exit_code == 0
    s = fake.seen["options"].settings()
    assert (s.adapter_revision, s.revision, s.force, s.quantization) == ("a1b2", "c3d4", True, "none")
    assert (s.cut, s.cut_block, s.max_length, s.kind) == ("shared", 128, 4096, "local")
    assert (s.dtype, s.device) == ("bfloat16", "cpu")
    remote = ["score", str(data), "-o", out, "--restart", "--remote", "http://u:pw-secret-77@h:8000",
              "--remote-model", "memrm-v2", "--api-key-env", "MEMGUARD_TEST_RM_KEY", "--remote-timeout", "12.5",
              "--remote-retries", "5", "--merged-adapter"]
    result = runner.invoke(cli.app, remote)
    assert result.exit_code == 0, result.output
    s = fake.seen["options"].settings()
    assert (s.kind, s.model, s.api_key_env, s.timeout, s.retries, s.merged_adapter) == (
        "remote", "memrm-v2", "MEMGUARD_TEST_RM_KEY", 12.5, 5, True)
    assert s.remote_options()["api_key"] == "sk-do-not-print-9f8e7d"
    assert "sk-do-not-print" not in result.output and "pw-secret-77" not in result.output


def test_the_deprecated_revision_pins_the_adapter(tmp_path, fake):
    data = write_jsonl(tmp_path / "rows.jsonl", [prompt_row(0.2, 1)])
    result = runner.invoke(cli.app, ["score", str(data), "-o", str(tmp_path / "o.jsonl"), "--revision", "abc"])
    assert result.exit_code == 0, result.output
    s = fake.seen["options"].settings()
    assert (s.adapter_revision, s.revision) == ("abc", None)
    assert "--adapter-revision" in result.output


def test_an_unsupported_quantization_fails_before_loading(tmp_path, fake):
    data = write_jsonl(tmp_path / "rows.jsonl", [prompt_row(0.2, 1)])
    result = runner.invoke(cli.app, ["score", str(data), "-o", str(tmp_path / "o.jsonl"), "--quantization", "int8"])
    assert result.exit_code == 2 and "'int8' is not one of" in result.output and not fake.seen
    bad = tmp_path / "g.toml"
    bad.write_text('[scorer]\nquantization = "int8"\n')
    line = one_line_error(runner.invoke(cli.app, ["score", str(data), "-o", str(tmp_path / "o.jsonl"),
                                                  "--config", str(bad)]))
    assert "scorer.quantization: Input should be 'auto', 'nf4' or 'none' (got 'int8')" in line


def test_remote_errors_suggest_options_the_command_line_has(tmp_path, monkeypatch):
    """The unknown-model and base-model messages name --remote-model, which the CLI accepts."""
    import httpx
    from memguard.scoring.remote import RemoteMemRM

    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id": "base", "root": "/m", "parent": None}]})

    monkeypatch.setattr(cli, "make_scorer", lambda options: RemoteMemRM(
        options.remote, model=options.remote_model or "memrm", transport=httpx.MockTransport(server)))
    data = write_jsonl(tmp_path / "rows.jsonl", [prompt_row(0.2, 1)])
    for model, expected in (("memrm", "does not serve model 'memrm'"), ("base", "serves 'base' as a plain model")):
        line = one_line_error(runner.invoke(cli.app, ["score", str(data), "-o", str(tmp_path / "o.jsonl"), "--remote",
                                                      "http://h:1", "--remote-model", model]), code=1)
        assert expected in line and "--remote-model" in line
    help_text = runner.invoke(cli.app, ["score", "--help"], terminal_width=200).output
    for option in ("--remote-model", "--merged-adapter", "--api-key-env", "--force"):
        assert option in help_text
