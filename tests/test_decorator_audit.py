"""The decorator (sync/async, OpenAI dicts and LangChain messages), audit mode and the sinks."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time

import pytest

from memguard import CompactionEvent, Guard, JSONLSink, LoggingSink, ObservationMasking, Verdict, guarded
from memguard.protocol import summary_message

from tests.doubles import AsyncFactPolicy, FactPolicy, KeyedScorer, swe_conversation

FACT = "FACT-42"
lc = pytest.importorskip("langchain_core.messages")


def lossy(messages):
    return [*messages[:2], summary_message("did things"), *messages[-4:]]


def to_langchain(messages):
    out = []
    for m in messages:
        if m["role"] == "system":
            out.append(lc.SystemMessage(m["content"]))
        elif m["role"] == "user":
            out.append(lc.HumanMessage(m["content"]))
        elif m["role"] == "assistant":
            calls = [{"name": c["function"]["name"], "args": json.loads(c["function"]["arguments"]), "id": c["id"]}
                     for c in m.get("tool_calls") or []]
            out.append(lc.AIMessage(m["content"], tool_calls=calls))
        else:
            out.append(lc.ToolMessage(m["content"], tool_call_id=m["tool_call_id"]))
    return out


def lc_lossy(messages):
    return [*messages[:2], lc.HumanMessage("[Summary] did things"), *messages[-4:]]


@pytest.mark.parametrize("kind", ["openai", "langchain"])
def test_decorator_sync(kind):
    before = swe_conversation(12, fact=FACT, fact_turn=3)
    if kind == "langchain":
        before, compact = to_langchain(before), lc_lossy
    else:
        compact = lossy
    seen = []
    guard = Guard(KeyedScorer({"ls -la": 0.97}), fallbacks=(ObservationMasking(keep_last=10),))
    wrapped = guard.compaction(policy=FactPolicy(FACT, langchain=kind == "langchain"))(compact)
    wrapped_cb = guarded(guard=guard, policy=FactPolicy(FACT), on_decision=seen.append)(compact)
    result = wrapped(before)
    assert wrapped.__name__ == compact.__name__
    assert wrapped.last_decision.verdict is Verdict.FALLBACK
    assert len(result) == len(before)
    assert type(result[3]) is type(before[3])
    if kind == "langchain":
        assert all(isinstance(m, lc.BaseMessage) for m in result)
        assert result[0] is before[0]
    wrapped_cb(before)
    assert len(seen) == 1 and seen[0].proposed_strategy == compact.__name__


@pytest.mark.parametrize("kind", ["openai", "langchain"])
async def test_decorator_async(kind):
    before = swe_conversation(12, fact=FACT)
    if kind == "langchain":
        before = to_langchain(before)

    @guarded(scorer=KeyedScorer({"ls -la": 0.97}), policy=AsyncFactPolicy(FACT), cooldown=0)
    async def summarise(messages, tail=4):
        return [*messages[:2], (lc.HumanMessage if kind == "langchain" else lambda c: {"role": "user", "content": c})("[Summary] x"), *messages[-tail:]]

    result = await summarise(before, tail=4)
    assert summarise.last_decision.verdict is Verdict.VETO
    assert result == before and all(a is b for a, b in zip(result, before))


def test_decorator_protects_input_from_in_place_mutation():
    before = swe_conversation(6, fact=FACT)
    snapshot = json.dumps(before)

    def mutating(messages):
        messages[3]["content"] = "clobbered"
        del messages[2:8]
        return messages

    wrapped = Guard(KeyedScorer({"ls -la": 0.97}), cooldown=0).compaction(policy=FactPolicy(FACT))(mutating)
    result = wrapped(before)
    assert json.dumps(before) == snapshot
    assert wrapped.last_decision.verdict is Verdict.VETO and result == before


def test_decorator_compaction_failure_keeps_context():
    before = swe_conversation(4)

    def broken(messages):
        raise TimeoutError("summariser timed out")

    wrapped = Guard(KeyedScorer()).compaction(policy=FactPolicy(FACT))(broken)
    assert wrapped(before) == before
    assert wrapped.last_decision.verdict is Verdict.VETO and "TimeoutError" in wrapped.last_decision.error


def test_audit_mode_never_changes_output_and_records(tmp_path):
    before = swe_conversation(12, fact=FACT)
    candidate = lossy(before)
    path = tmp_path / "audit.jsonl"
    recorded = []
    guard = Guard(KeyedScorer({"ls -la": 0.97}, delay=0.05), mode="audit", sinks=[JSONLSink(path)],
                  on_decision=recorded.append, fallbacks=(ObservationMasking(),))
    started = time.perf_counter()
    decision = guard.review(CompactionEvent(before=before, candidate=candidate, strategy="summary"), FactPolicy(FACT))
    elapsed = time.perf_counter() - started
    assert decision.verdict is Verdict.AUDIT and decision.pending
    assert decision.messages == candidate and all(a is b for a, b in zip(decision.messages, candidate))
    assert elapsed < 0.05  # the scorer alone sleeps 50 ms: scoring is off the caller's path
    assert guard.flush(10)
    assert len(recorded) == 1
    final = recorded[0]
    assert final.verdict is Verdict.AUDIT and final.p_harmful == pytest.approx(0.97)
    assert "enforce would not commit" in final.reasons[0]
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["candidates"][0]["p_harmful"] == pytest.approx(0.97)
    guard.close()


def test_audit_queue_full_drops_and_counts():
    gate = threading.Event()

    class Blocking(KeyedScorer):
        def score(self, prompts):
            gate.wait(5)
            return super().score(prompts)

    before = swe_conversation(6, fact=FACT)
    guard = Guard(Blocking({"ls -la": 0.9}), mode="audit", audit_queue_size=2)
    started = time.perf_counter()
    for _ in range(10):
        guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
    assert time.perf_counter() - started < 0.5  # never blocks
    assert guard.audit_dropped >= 7
    gate.set()
    assert guard.flush(10)
    guard.close()


def test_jsonl_sink_private_redacted_and_rotating(tmp_path):
    path = tmp_path / "logs" / "audit.jsonl"
    before = swe_conversation(12, fact=FACT)
    sink = JSONLSink(path, redact=True, include_messages=True, max_bytes=6000, backups=2)
    guard = Guard(KeyedScorer({"ls -la": 0.97}), sinks=[sink], cooldown=0)
    for _ in range(8):
        guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    files = sorted(tmp_path.joinpath("logs").iterdir())
    assert [f.name for f in files] == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    text = "".join(f.read_text() for f in files)
    assert FACT not in text and "ls -la" not in text and "programmer" not in text
    record = json.loads(path.read_text().splitlines()[-1])
    assert set(record["recorded_action"]) == {"sha256", "chars"}
    assert set(record["messages"][0]) == {"role", "sha256", "chars"}
    assert all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in files)
    guard.close()


def test_logging_sink(caplog):
    before = swe_conversation(6, fact=FACT)
    guard = Guard(KeyedScorer({"ls -la": 0.97}), sinks=[LoggingSink()])
    with caplog.at_level(logging.INFO, logger="memguard.decisions"):
        guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
    assert "memguard veto" in caplog.text and "p_harmful=0.970" in caplog.text
    assert FACT not in caplog.text


def test_opentelemetry_sink():
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from memguard import OpenTelemetrySink

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    before = swe_conversation(6, fact=FACT)
    guard = Guard(KeyedScorer({"ls -la": 0.97}), sinks=[OpenTelemetrySink(provider)])
    guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
    (span,) = exporter.get_finished_spans()
    assert span.attributes["memguard.verdict"] == "veto"
    assert span.attributes["memguard.p_harmful"] == pytest.approx(0.97)


def test_failing_sink_does_not_break_the_agent(caplog):
    class Broken:
        def emit(self, decision):
            raise OSError("disk full")

        def close(self):
            pass

    before = swe_conversation(6, fact=FACT)
    decision = Guard(KeyedScorer({"ls -la": 0.97}), sinks=[Broken()]).review(
        CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
    assert decision.verdict is Verdict.VETO
    assert "sink Broken failed" in caplog.text
