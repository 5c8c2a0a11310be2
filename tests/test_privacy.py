"""Privacy: redacted audit logs hold hashes and sizes, never text; files are private; errors don't quote.

A secret is planted in the system prompt, a tool output, a tool-call argument, the summary and
the agent's actions; the test then greps everything memguard wrote or raised for it and for
every message's text.
"""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest

from memguard import CompactionEvent, Guard, JSONLSink, LoggingSink, ObservationMasking, Score
from memguard.protocol import render_body, summary_message
from tests import figures
from tests.doubles import FactPolicy, KeyedScorer, swe_conversation

SECRET = "sk-live-PLANTED-7f3a9c2e1b"


def secret_conversation():
    before = swe_conversation(n_turns=8, fact="FACT-42")
    before[0]["content"] = f"You are a programmer. API key: {SECRET}"
    before[5]["content"] = f"env printed {SECRET} and more output"
    before[6]["tool_calls"][0]["function"]["arguments"] = json.dumps({"command": f"export TOKEN={SECRET}"})
    candidate = [*before[:2], summary_message(f"Set TOKEN={SECRET}; grepped files"), *before[-4:]]
    return before, candidate


class SecretPolicy(FactPolicy):
    """The agent's next command itself contains the secret (so the actions do)."""

    def __call__(self, messages):
        response = super().__call__(messages)
        response["content"] += f" --token {SECRET}"
        return response


def texts_of(messages):
    return [t for t in (render_body(m) for m in messages) if len(t) >= 12]


def scenarios():
    """(name, guard kwargs, scorer): commit, veto, fallback, scorer error quoting the prompt."""

    class QuotingScorer:
        def score(self, prompts):
            raise ValueError(f"cannot tokenize {prompts[0][:120]!r}")

    return [
        ("veto", {}, KeyedScorer(default=0.97)),
        ("commit", {"band": None}, KeyedScorer(default=0.01)),
        ("fallback", {"fallbacks": (ObservationMasking(keep_last=2),)}, KeyedScorer({"strategy_swap__summary": 0.99}, default=0.01)),
        ("error", {}, QuotingScorer()),
        ("audit", {"mode": "audit"}, KeyedScorer(default=0.5)),
    ]


def test_redacted_log_has_hashes_and_sizes_never_text(tmp_path):
    before, candidate = secret_conversation()
    path = tmp_path / "audit.jsonl"
    decisions = []
    for name, options, scorer in scenarios():
        guard = Guard(scorer, sinks=[JSONLSink(path, redact=True, include_messages=True)], cooldown=0,
                      identical_is_safe=False, on_decision=decisions.append, **options)
        guard.review(CompactionEvent(before=before, candidate=candidate, strategy="summary"), SecretPolicy("FACT-42"))
        guard.flush(10)
        guard.close()
    raw = path.read_text(encoding="utf-8")
    records = [json.loads(line) for line in raw.splitlines()]
    assert len(records) == len(scenarios())
    assert {d.verdict.value for d in decisions} == {"veto", "commit", "fallback", "audit"}

    needles = {SECRET, *texts_of(before), *texts_of(candidate)}
    needles |= {d.recorded_action for d in decisions if d.recorded_action}
    needles |= {c.proposed_action for d in decisions for c in d.candidates if c.proposed_action}
    leaks = sorted(n for n in needles if n in raw)
    figures.count("privacy: texts grepped for in redacted logs", len(needles))
    figures.count("privacy: texts found in redacted logs", len(leaks))
    assert not leaks, leaks[:3]
    for record in records:
        assert set(record["recorded_action"] or {"sha256": 0, "chars": 0}) == {"sha256", "chars"}
        assert all(set(m) == {"role", "sha256", "chars"} for m in record["messages"])
        assert all(c["proposed_action"] is None or set(c["proposed_action"]) == {"sha256", "chars"}
                   for c in record["candidates"])
    assert any(r["recorded_action"] and r["recorded_action"]["chars"] > len(SECRET) for r in records)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_audit_files_are_private_new_preexisting_and_rotated(tmp_path):
    fresh = tmp_path / "fresh.jsonl"
    existing = tmp_path / "existing.jsonl"
    existing.write_text('{"old": 1}\n')
    os.chmod(existing, 0o644)
    sinks = [JSONLSink(fresh, max_bytes=3000, backups=3), JSONLSink(existing)]
    before, candidate = secret_conversation()
    guard = Guard(KeyedScorer(default=0.97), sinks=sinks, cooldown=0)
    for _ in range(6):
        guard.review(CompactionEvent(before=before, candidate=candidate), FactPolicy("FACT-42"))
    guard.close()
    files = sorted(tmp_path.iterdir())
    assert len(files) >= 3 and any(f.name.endswith(".1") for f in files)  # it rotated
    modes = {f.name: _mode(f) for f in files}
    figures.count("privacy: audit files checked for mode 0600", len(files))
    assert set(modes.values()) == {0o600}, modes
    assert existing.read_text().startswith('{"old": 1}\n')  # appended, not truncated


def test_errors_reasons_and_logs_do_not_quote_the_conversation(caplog):
    before, candidate = secret_conversation()

    class Quoting:
        def score(self, prompts):
            raise RuntimeError(f"tokenizer choked near: {prompts[0][:200]}")

    def agent_quoting(messages):
        raise ValueError(f"400 invalid request: messages[0].content={messages[0]['content']!r}")

    class QuotingSink:
        def emit(self, decision):
            raise OSError(f"cannot write {decision.messages[0]['content']}")

        def close(self):
            raise OSError(f"cannot close {SECRET}")

    def callback(decision):
        raise KeyError(SECRET)

    cases = [
        dict(scorer=Quoting(), policy=FactPolicy("FACT-42")),
        dict(scorer=KeyedScorer(), policy=agent_quoting),
        dict(scorer=KeyedScorer(default=0.97), policy=FactPolicy("FACT-42"), sinks=[QuotingSink()],
             on_decision=callback),
        dict(scorer=KeyedScorer(default=0.97), policy=FactPolicy("FACT-42"), mode="audit", sinks=[QuotingSink()]),
    ]
    texts = []
    with caplog.at_level(logging.DEBUG):
        for case in cases:
            policy = case.pop("policy")
            guard = Guard(cooldown=0, **case)
            decision = guard.review(CompactionEvent(before=before, candidate=candidate), policy)
            guard.flush(10)
            guard.close()
            texts += [decision.error or "", *decision.reasons, *(c.error or "" for c in decision.candidates)]
        Guard(KeyedScorer(default=0.97), sinks=[LoggingSink()]).review(
            CompactionEvent(before=before, candidate=candidate), FactPolicy("FACT-42"))
    logged = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert any("withheld" in t for t in texts)  # the quoting errors were caught, not just absent
    assert any("OSError" in line for line in logged)  # the sink failure was reported (by type)
    everything = "\n".join(texts + logged)
    figures.count("privacy: error/log strings checked", len(texts) + len(logged))
    assert SECRET not in everything
    assert "You are a programmer" not in everything


@pytest.mark.parametrize("bad", [f"user said {SECRET}", {"role": "user", "content": SECRET}, [SECRET], [{"role": "user", "content": SECRET}, 7]],
                         ids=["str", "dict", "list of str", "int element"])
def test_value_errors_for_bad_input_do_not_quote_it(bad):
    with pytest.raises(ValueError) as info:
        Guard(KeyedScorer()).review(CompactionEvent(before=bad, candidate=[]), FactPolicy("x"))
    figures.count("privacy: bad-input errors checked")
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
