"""The integration contract (memguard.testing.contract), run on memguard's own decorator.

A minimal agent loop stands in for a framework: it compacts its history with a plain function
once it grows past a trigger, then asks a scripted model for the next step. Guarded, the
function is wrapped by `Guard.compaction`, and the loop reuses `Decision.response` as the step's
response, as an integration must.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from memguard import Guard
from memguard.testing.contract import AgentRun, ConstantScorer, IntegrationContract, RecordingSink, RunMode, Variant

FACT = "FACT-42"
N_STEPS = 6
TRIGGER = 7  # messages


class ScriptedModel:
    """Runs `echo step k` while FACT is in its context, `ls -la # step k` once forgotten."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        text = "\n".join(str(m.get("content") or "") for m in messages)
        k = max([int(s) for s in _steps(messages)], default=0)
        if k >= N_STEPS:
            return {"role": "assistant", "content": "done: " + (FACT if FACT in text else "forgot")}
        command = f"echo step {k + 1}" if FACT in text or k == 0 else f"ls -la # step {k + 1}"
        call = {"id": f"c{k + 1}", "type": "function",
                "function": {"name": "bash", "arguments": json.dumps({"command": command})}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}

    async def acall(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        await asyncio.sleep(0)
        return self(messages)


def _steps(messages: list[dict[str, Any]]) -> list[str]:
    found = []
    for m in messages:
        if m["role"] == "tool":
            found.extend(part.split()[0] for part in str(m["content"]).split("step ")[1:])
    return found


def drop_middle(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A lossy compaction: keep the system prompt, the task and the last assistant/tool pair."""
    return [*messages[:2], {"role": "user", "content": "[Summary] some commands ran"}, *messages[-2:]]


def tool_result(call: dict[str, Any]) -> dict[str, Any]:
    command = json.loads(call["function"]["arguments"])["command"]
    step = command.split("step ")[1]
    return {"role": "tool", "tool_call_id": call["id"], "content": f"step {step}" + (f" {FACT}" if step == "1" else "")}


def run_loop(model: ScriptedModel, compact: Any, *, use_response: bool) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are careful."},
                                      {"role": "user", "content": "Find the fact."}]
    while True:
        reply = None
        if compact is not None and len(messages) > TRIGGER:
            messages = compact(messages)
            decision = getattr(compact, "last_decision", None)
            if use_response and decision is not None and decision.response is not None:
                reply = decision.response
        reply = reply if reply is not None else model(messages)
        messages = [*messages, reply]
        if not reply.get("tool_calls"):
            return messages
        messages.append(tool_result(reply["tool_calls"][0]))


async def arun_loop(model: ScriptedModel, compact: Any, *, use_response: bool) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are careful."},
                                      {"role": "user", "content": "Find the fact."}]
    while True:
        reply = None
        if compact is not None and len(messages) > TRIGGER:
            messages = await compact(messages)
            decision = getattr(compact, "last_decision", None)
            if use_response and decision is not None and decision.response is not None:
                reply = decision.response
        reply = reply if reply is not None else await model.acall(messages)
        messages = [*messages, reply]
        if not reply.get("tool_calls"):
            return messages
        messages.append(tool_result(reply["tool_calls"][0]))


class TestDecoratorContract(IntegrationContract):
    def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode) -> AgentRun:
        model = ScriptedModel()
        if mode == "sync":
            compact: Any = None if variant == "plain" else drop_middle
            if guard is not None:
                compact = guard.compaction(policy=model)(drop_middle)
            transcript = run_loop(model, compact, use_response=guard is not None)
        else:
            async def adrop_middle(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return drop_middle(messages)

            compact = None if variant == "plain" else adrop_middle
            if guard is not None:
                compact = guard.compaction(policy=model.acall)(adrop_middle)
            transcript = asyncio.run(arun_loop(model, compact, use_response=guard is not None))
        return AgentRun(transcript=transcript, model_calls=model.calls)


class _WastefulLoop(TestDecoratorContract):
    """An integration that ignores the reused probe: it must break the call budget."""

    def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode) -> AgentRun:
        model = ScriptedModel()
        compact: Any = None if variant == "plain" else drop_middle
        if guard is not None:
            compact = guard.compaction(policy=model)(drop_middle)
        return AgentRun(transcript=run_loop(model, compact, use_response=False), model_calls=model.calls)


def test_the_contract_catches_an_integration_that_calls_the_model_twice():
    with pytest.raises(AssertionError, match="model calls"):
        _WastefulLoop().test_safe_verdicts_end_like_the_unguarded_compaction("sync")


def test_the_contract_catches_an_integration_that_ignores_the_veto():
    class IgnoresVeto(TestDecoratorContract):
        def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode) -> AgentRun:
            model = ScriptedModel()
            compact: Any = None if variant == "plain" else drop_middle
            if guard is not None:
                wrapped = guard.compaction(policy=model)(drop_middle)

                def compact(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
                    wrapped(messages)
                    return drop_middle(messages)  # applies the compaction whatever the guard said

            return AgentRun(transcript=run_loop(model, compact, use_response=False), model_calls=model.calls)

    with pytest.raises(AssertionError):
        IgnoresVeto().test_harmful_verdicts_end_like_a_run_that_never_compacts("sync")


def test_recording_sink_counts_reviews_not_cooldown_vetoes():
    sink = RecordingSink()
    guard = Guard(ConstantScorer(1.0), sinks=[sink], identical_is_safe=False, cooldown=10)
    model = ScriptedModel()
    run_loop(model, guard.compaction(policy=model)(drop_middle), use_response=True)
    assert len(sink.reviews) == 1 and len(sink.decisions) > 1
