"""Lone surrogates at every boundary: scored in-process and remotely as their cleaned text,
written to the audit log as valid UTF-8, read back, and rendered in the report.

Tool output decoded with ``surrogateescape``, or JSON cut inside an emoji, carries a lone
surrogate; before memguard.text the tokenizer raised on it (the guard then failed open on every
compaction of that conversation), httpx raised a raw UnicodeEncodeError, and the audit log
became unreadable.
"""

from __future__ import annotations

import json
import math

import httpx
import pytest

from memguard import CompactionEvent, Guard, JSONLSink, Verdict
from memguard.protocol import render_prompt, summary_message
from memguard.scoring.remote import RemoteMemRM
from memguard.text import REPLACEMENT, decode_line, safe_json, safe_text
from tests.doubles import FactPolicy, ValueScorer, swe_conversation

LONE = "\ud83d"  # JSON cut inside an emoji
ESCAPED = "\udcff"  # a byte decoded with errors="surrogateescape"


def conversation(dirty: bool) -> list[dict]:
    messages = swe_conversation(8, fact="FACT-42")
    marks = (LONE, ESCAPED) if dirty else (REPLACEMENT, REPLACEMENT)
    messages[2] = {**messages[2], "content": f"{messages[2]['content']} cut{marks[0]} and{marks[1]}byte"}
    return messages


def prompt(dirty: bool) -> str:
    return render_prompt(conversation(dirty), step=4, recorded="cat src/app.py", proposed="ls -la",
                         perturbation="strategy_swap__summary")


# ------------------------------------------------------------------------------ the rule


def test_safe_text_replaces_lone_surrogates_and_keeps_valid_text():
    valid = "tabs\t, CRLF\r\n, emoji \U0001f600, NUL \x00"
    assert safe_text(valid) is valid  # the protocol stays byte-exact
    assert safe_text(f"a{LONE}b{ESCAPED}c") == f"a{REPLACEMENT}b{REPLACEMENT}c"
    assert safe_text("\ud83d\ude00") == "\U0001f600"  # a pair is the character it encodes
    assert safe_text("\ude00\ud83d") == REPLACEMENT * 2  # reversed: two lone ones
    safe_text(safe_text(f"x{LONE}")).encode("utf-8")


def test_safe_json_and_decode_line():
    value = json.loads('{"k\\ud800": ["\\udcff", {"deep": "\\ud83d\\ude00"}], "n": 1}')
    assert safe_json(value) == {f"k{REPLACEMENT}": [REPLACEMENT, {"deep": "\U0001f600"}], "n": 1}
    nested: object = "\ud800"
    for _ in range(5000):  # deeper than the recursion limit: iterative
        nested = [nested]
    safe_json(nested)
    assert decode_line(f"ok{LONE}".encode("utf-8", "surrogatepass")) == f"ok{REPLACEMENT}"
    with pytest.raises(UnicodeDecodeError):
        decode_line(b"\xff\xfe")


# ------------------------------------------------------------------------------ in-process


def test_memrm_scores_a_lone_surrogate_as_its_cleaned_text(byte_rm):
    dirty, clean = prompt(dirty=True), prompt(dirty=False)
    assert LONE in dirty and dirty != clean
    (got,), (want,) = byte_rm.score([dirty]), byte_rm.score([clean])
    assert got.p_harmful == want.p_harmful and got.n_tokens == want.n_tokens
    assert byte_rm.count_tokens(dirty) == byte_rm.count_tokens(clean)


def test_the_guard_reviews_a_conversation_holding_lone_surrogates(byte_rm, tmp_path):
    """Before: the tokenizer raised, so with on_error="open" every compaction committed unreviewed."""
    decisions = {}
    for dirty in (True, False):
        before = conversation(dirty)
        candidate = [*before[:2], summary_message("the agent looked around"), *before[-2:]]
        log = tmp_path / f"audit-{dirty}.jsonl"
        guard = Guard(byte_rm, on_error="open", identical_is_safe=False, sinks=[JSONLSink(log, include_messages=True)])
        decisions[dirty] = guard.review(CompactionEvent(before=before, candidate=candidate, step=4, strategy="summary"),
                                        FactPolicy("FACT-42"))
        guard.close()
        lines = log.read_bytes().splitlines()
        assert len(lines) == 1
        lines[0].decode("utf-8")  # strict UTF-8: a lone surrogate is written as U+FFFD
    assert decisions[True].error is None, decisions[True].error
    assert decisions[True].p_harmful == decisions[False].p_harmful
    assert decisions[True].verdict == decisions[False].verdict


# ------------------------------------------------------------------------------ remote


class MemRMServer:
    """A vLLM look-alike whose answers come from an in-process MemRM: same tokenizer, same model."""

    def __init__(self, rm, max_model_len: int = 40_960):
        self.rm = rm
        self.max_model_len = max_model_len
        self.seen: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        path = request.url.path
        if path == "/v1/models":
            cards = [{"id": "base", "root": "/m/base", "parent": None, "max_model_len": self.max_model_len},
                     {"id": "memrm", "root": "/m/adapter", "parent": "base"}]
            return httpx.Response(200, json={"data": cards})
        if path == "/tokenize":
            self.seen.append(body["prompt"])
            return httpx.Response(200, json={"tokens": self.rm.encode(body["prompt"]), "max_model_len": self.max_model_len})
        assert path == "/generative_scoring" and body["query"] == []
        harmful, safe = body["label_token_ids"]
        assert (safe, harmful) == self.rm.label_ids
        scores = [self.rm.score_ids(item) for item in body["items"]]
        used = sum(len(i) for i in body["items"])
        return httpx.Response(200, json={"data": [{"index": i, "score": p} for i, p in enumerate(scores)],
                                         "usage": {"prompt_tokens": used}})


def remote_for(server: MemRMServer, **options) -> RemoteMemRM:
    return RemoteMemRM("http://rm.test", transport=httpx.MockTransport(server),
                       async_transport=httpx.MockTransport(server), **options)


def test_remote_scores_a_lone_surrogate_as_its_cleaned_text_and_as_in_process(byte_rm):
    """Before: httpx raised a raw UnicodeEncodeError (not a RemoteScorerError) on the prompt."""
    import asyncio

    server = MemRMServer(byte_rm)
    dirty, clean = prompt(dirty=True), prompt(dirty=False)
    with remote_for(server) as remote:
        got, want = remote.score([dirty, clean])
        (async_got,) = asyncio.run(remote.ascore([dirty]))
    local = byte_rm.score([dirty])[0]
    assert got.p_harmful == want.p_harmful == async_got.p_harmful
    assert math.isclose(got.p_harmful, local.p_harmful, abs_tol=1e-6)
    assert (got.n_tokens, got.n_truncated) == (local.n_tokens, local.n_truncated)
    assert all(LONE not in text and ESCAPED not in text for text in server.seen)


def test_remote_and_in_process_keep_the_same_number_of_tokens(byte_rm):
    """One cut rule: max_length positions, the label's included, on both paths; a server whose
    max_model_len equals max_length cuts exactly as in-process and logs no warning."""
    from memguard import MemRM

    text = prompt(dirty=False)
    n = byte_rm.count_tokens(text)
    limit = n - 100
    local = MemRM.from_model(byte_rm.model, byte_rm.tokenizer, max_length=limit, identity=byte_rm.identity)
    with remote_for(MemRMServer(byte_rm, max_model_len=limit), max_length=limit) as remote:
        (got,) = remote.score([text])
    (want,) = local.score([text])
    assert got.n_tokens == want.n_tokens == limit - 1
    assert got.n_truncated == want.n_truncated == n - (limit - 1)
    assert math.isclose(got.p_harmful, want.p_harmful, abs_tol=1e-6)


def test_remote_shared_cut_matches_in_process(byte_rm):
    from memguard import MemRM

    prompts = [render_prompt(conversation(False), step=4, recorded="cat src/app.py", proposed=action,
                             perturbation="strategy_swap__summary") for action in ("ls", "cat setup.py && ls -la")]
    limit = min(byte_rm.count_tokens(p) for p in prompts) - 50
    local = MemRM.from_model(byte_rm.model, byte_rm.tokenizer, max_length=limit, cut="shared")
    with remote_for(MemRMServer(byte_rm), max_length=limit, cut="shared") as remote:
        got = remote.score(prompts)
    want = local.score(prompts)
    assert len({s.n_truncated for s in got}) == 1
    assert [(g.n_tokens, g.n_truncated) for g in got] == [(w.n_tokens, w.n_truncated) for w in want]
    assert max(abs(g.p_harmful - w.p_harmful) for g, w in zip(got, want)) < 1e-6


# ------------------------------------------------------------------------------ read back, report


@pytest.mark.cli
def test_audit_log_with_lone_surrogates_reads_back_and_renders(tmp_path):
    from typer.testing import CliRunner

    import memguard.cli as cli
    from memguard.report import read_audit

    log = tmp_path / "audit.jsonl"
    before = conversation(dirty=True)
    candidate = [*before[:2], summary_message(f"kept {LONE}"), *before[-2:]]
    guard = Guard(ValueScorer(0.9), sinks=[JSONLSink(log, include_messages=True)], identical_is_safe=False)
    decision = guard.review(CompactionEvent(before=before, candidate=candidate, step=4, strategy="summary",
                                            conversation_id=f"conv {ESCAPED}"), FactPolicy("FACT-42"))
    guard.close()
    assert decision.verdict is Verdict.VETO
    # an older log, written with errors="surrogatepass", next to the new line
    old = json.dumps({"verdict": "commit", "conversation_id": f"old {LONE}", "p_harmful": 0.1}, ensure_ascii=False)
    with open(log, "ab") as fh:
        fh.write(old.encode("utf-8", "surrogatepass") + b"\n")
    decisions = read_audit(log)
    assert [d.conversation_id for d in decisions] == [f"conv {REPLACEMENT}", f"old {REPLACEMENT}"]
    result = CliRunner().invoke(cli.app, ["report", str(log), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "2 decisions in 2 conversations" in result.output
    assert (tmp_path / "r.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
