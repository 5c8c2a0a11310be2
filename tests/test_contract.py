"""The integration contract (memguard.testing.contract), run on memguard's own decorator.

A minimal agent loop stands in for a framework: it compacts its history with a plain function
once it grows past a trigger, then asks a scripted model for the next step. Guarded, the
function is wrapped by `Guard.compaction`, and the loop reuses `Decision.response` as the step's
response, as an integration must. Like a framework, the run keeps its stream writer and its usage
counter in its context (a `ContextVar`), the model reports to whatever it finds there, and the run
calls the model with non-default settings, which a probe must carry too. The decorator contract
fills in every `AgentRun` field; the negative tests at the end prove the contract catches an
integration that breaks each promise.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pytest

from memguard import CompactionEvent, Guard
from memguard.testing.contract import AgentRun, ConstantScorer, IntegrationContract, RecordingSink, RunMode, Variant

FACT = "FACT-42"
N_STEPS = 6
TRIGGER = 7  # messages


class Settings(NamedTuple):
    """A request's signature: model and settings, never the messages."""

    model: str = "scripted-1"
    temperature: float = 1.0
    max_tokens: int | None = None
    tool_choice: str = "auto"


RUN_SETTINGS = Settings(temperature=0.2, max_tokens=64, tool_choice="required")  # not the defaults


@dataclass
class Usage:
    requests: int = 0
    tokens: int = 0


STREAM: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("stream", default=None)
USAGE: contextvars.ContextVar[Usage | None] = contextvars.ContextVar("usage", default=None)


@dataclass
class ScriptedModel:
    """Runs `echo step k` while FACT is in its context, `ls -la # step k` once forgotten."""

    calls: int = 0
    signatures: list[Settings] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, messages: list[dict[str, Any]], settings: Settings = Settings()) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
            self.signatures.append(settings)
        text = "\n".join(str(m.get("content") or "") for m in messages)
        k = max([int(s) for s in _steps(messages)], default=0)
        if k >= N_STEPS:
            reply: dict[str, Any] = {"role": "assistant", "content": "done: " + (FACT if FACT in text else "forgot")}
        else:
            command = f"echo step {k + 1}" if FACT in text or k == 0 else f"ls -la # step {k + 1}"
            call = {"id": f"c{k + 1}", "type": "function",
                    "function": {"name": "bash", "arguments": json.dumps({"command": command})}}
            reply = {"role": "assistant", "content": None, "tool_calls": [call]}
        stream, usage = STREAM.get(), USAGE.get()  # what a framework's run context holds
        if stream is not None:
            stream.append(json.dumps(reply, sort_keys=True))
        if usage is not None:
            usage.requests += 1
            usage.tokens += len(text) // 4
        return reply

    async def acall(self, messages: list[dict[str, Any]], settings: Settings = Settings()) -> dict[str, Any]:
        await asyncio.sleep(0)
        return self(messages, settings)


def _steps(messages: list[dict[str, Any]]) -> list[str]:
    found = []
    for m in messages:
        if m["role"] == "tool":
            found.extend(part.split()[0] for part in str(m["content"]).split("step ")[1:])
    return found


def drop_middle(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A lossy compaction: keep the system prompt, the task and the last assistant/tool pair."""
    return [*messages[:2], {"role": "user", "content": "[Summary] some commands ran"}, *messages[-2:]]


class Counted:
    """The inner compaction, counting its invocations (sync or async)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.calls += 1
        return drop_middle(messages)

    async def acall(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        return self(messages)


def tool_result(call: dict[str, Any]) -> dict[str, Any]:
    command = json.loads(call["function"]["arguments"])["command"]
    step = command.split("step ")[1]
    return {"role": "tool", "tool_call_id": call["id"], "content": f"step {step}" + (f" {FACT}" if step == "1" else "")}


def opening(conversation: int) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "You are careful."},
            {"role": "user", "content": f"Find the fact. [conversation {conversation}]"}]


def run_loop(model: ScriptedModel, compact: Any, *, use_response: bool, conversation: int = 0) -> list[dict[str, Any]]:
    messages = opening(conversation)
    while True:
        reply = None
        if compact is not None and len(messages) > TRIGGER:
            messages = compact(messages)
            decision = getattr(compact, "last_decision", None)  # this thread's own
            if use_response and decision is not None and decision.response is not None:
                reply = decision.response
        reply = reply if reply is not None else model(messages, RUN_SETTINGS)
        messages = [*messages, reply]
        if not reply.get("tool_calls"):
            return messages
        messages.append(tool_result(reply["tool_calls"][0]))


async def arun_loop(model: ScriptedModel, compact: Any, *, use_response: bool,
                    conversation: int = 0) -> list[dict[str, Any]]:
    messages = opening(conversation)
    while True:
        reply = None
        if compact is not None and len(messages) > TRIGGER:
            messages = await compact(messages)
            decision = getattr(compact, "last_decision", None)  # this task's own
            if use_response and decision is not None and decision.response is not None:
                reply = decision.response
        reply = reply if reply is not None else await model.acall(messages, RUN_SETTINGS)
        messages = [*messages, reply]
        if not reply.get("tool_calls"):
            return messages
        messages.append(tool_result(reply["tool_calls"][0]))


def in_run_context(run: Any) -> tuple[Any, list[str], Usage]:
    """Run `run()` with a stream and a usage counter in its context, as a framework's run does."""
    stream, usage = [], Usage()

    def with_context() -> Any:
        STREAM.set(stream)
        USAGE.set(usage)
        return run()

    return contextvars.copy_context().run(with_context), stream, usage


class _Shared:
    """One decorated function per guard, shared by every conversation run on it (as a module-level
    ``@guard.compaction`` would be): the run's model and inner compaction are found by the task."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wrappers: dict[tuple[int, bool, str], Any] = {}
        self.users: Counter[tuple[int, bool, str]] = Counter()
        self.runs: dict[str, tuple[ScriptedModel, Counted]] = {}

    def acquire(self, key: tuple[int, bool, str], make: Any) -> Any:
        """The wrapper for `key`, made once while runs use it (let go with the last one: the
        guard must not outlive its runs through this fixture)."""
        with self.lock:
            if key not in self.wrappers:
                self.wrappers[key] = make()
            self.users[key] += 1
            return self.wrappers[key]

    def release(self, key: tuple[int, bool, str] | None) -> None:
        with self.lock:
            if key is None:
                return
            self.users[key] -= 1
            if not self.users[key]:
                del self.wrappers[key], self.users[key]

    def register(self, conversation: int, model: ScriptedModel, inner: Counted) -> None:
        with self.lock:
            self.runs[opening(conversation)[1]["content"]] = (model, inner)

    def of(self, messages: list[dict[str, Any]]) -> tuple[ScriptedModel, Counted]:
        with self.lock:
            return self.runs[messages[1]["content"]]


class TestDecoratorContract(IntegrationContract):
    must_reduce_variant = True

    @property
    def shared(self) -> _Shared:
        """This test's decorated functions (pytest makes a new instance for every test)."""
        return self.__dict__.setdefault("_shared", _Shared())

    def policy(self, model: ScriptedModel, *, asynchronous: bool) -> Any:
        """The agent as the guard probes it: the run's own model with the run's own settings."""
        return functools.partial(model.acall if asynchronous else model, settings=RUN_SETTINGS)

    def compaction(self, variant: Variant, guard: Guard | None, model: ScriptedModel, inner: Counted, *,
                   asynchronous: bool) -> Any:
        if variant == "plain":
            return None
        if guard is None:
            return inner.acall if asynchronous else inner
        shared = self.shared
        if asynchronous:
            async def policy(messages: list[dict[str, Any]]) -> dict[str, Any]:
                return await self.policy(shared.of(messages)[0], asynchronous=True)(messages)

            async def function(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return await shared.of(messages)[1].acall(messages)
        else:
            def policy(messages: list[dict[str, Any]]) -> dict[str, Any]:  # type: ignore[misc]
                return self.policy(shared.of(messages)[0], asynchronous=False)(messages)

            def function(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:  # type: ignore[misc]
                return shared.of(messages)[1](messages)

        return guard.compaction(policy=policy, must_reduce=variant == "must_reduce")(function)

    def _compact_for_run(self, variant: Variant, guard: Guard | None, model: ScriptedModel, inner: Counted, *,
                         asynchronous: bool) -> tuple[Any, tuple[int, bool, str] | None]:
        if guard is None or variant == "plain":
            return self.compaction(variant, guard, model, inner, asynchronous=asynchronous), None
        key = (id(guard), asynchronous, variant)
        make = functools.partial(self.compaction, variant, guard, model, inner, asynchronous=asynchronous)
        return self.shared.acquire(key, make), key

    def result(self, transcript: Any, model: ScriptedModel, inner: Counted, stream: list[str], usage: Usage,
               variant: Variant) -> AgentRun:
        return AgentRun(transcript=transcript, model_calls=model.calls,
                        compactions=None if variant == "plain" else inner.calls,
                        requests=list(model.signatures), streamed=stream, usage=usage)

    def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode = "sync",
                  conversation: int = 0) -> AgentRun:
        assert mode == "sync"  # async runs go through arun_agent
        model, inner = ScriptedModel(), Counted()
        self.shared.register(conversation, model, inner)
        compact, key = self._compact_for_run(variant, guard, model, inner, asynchronous=False)
        try:
            transcript, stream, usage = in_run_context(
                lambda: run_loop(model, compact, use_response=guard is not None, conversation=conversation))
        finally:
            self.shared.release(key)
        return self.result(transcript, model, inner, stream, usage, variant)

    async def arun_agent(self, variant: Variant, guard: Guard | None, *, conversation: int = 0) -> AgentRun:
        model, inner = ScriptedModel(), Counted()
        self.shared.register(conversation, model, inner)
        compact, key = self._compact_for_run(variant, guard, model, inner, asynchronous=True)
        stream, usage = [], Usage()
        STREAM.set(stream)  # this task's context (asyncio.gather gives each its own copy)
        USAGE.set(usage)
        try:
            transcript = await arun_loop(model, compact, use_response=guard is not None, conversation=conversation)
        finally:
            self.shared.release(key)
        return self.result(transcript, model, inner, stream, usage, variant)


# ---------------------------------------------------------------------- the contract catches broken integrations


class _WastefulLoop(TestDecoratorContract):
    """An integration that ignores the reused probe: it must break the call budget."""

    def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode = "sync",
                  conversation: int = 0) -> AgentRun:
        model = ScriptedModel()
        compact: Any = None if variant == "plain" else drop_middle
        if guard is not None:
            compact = guard.compaction(policy=self.policy(model, asynchronous=False))(drop_middle)
        return AgentRun(transcript=run_loop(model, compact, use_response=False), model_calls=model.calls)


def test_the_contract_catches_an_integration_that_calls_the_model_twice():
    with pytest.raises(AssertionError, match="model calls"):
        _WastefulLoop().test_safe_verdicts_end_like_the_unguarded_compaction("sync")


def test_the_contract_catches_an_integration_that_ignores_the_veto():
    class IgnoresVeto(TestDecoratorContract):
        def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode = "sync",
                      conversation: int = 0) -> AgentRun:
            model = ScriptedModel()
            compact: Any = None if variant == "plain" else drop_middle
            if guard is not None:
                wrapped = guard.compaction(policy=self.policy(model, asynchronous=False))(drop_middle)

                def compact(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
                    wrapped(messages)
                    return drop_middle(messages)  # applies the compaction whatever the guard said

            return AgentRun(transcript=run_loop(model, compact, use_response=False), model_calls=model.calls)

    with pytest.raises(AssertionError):
        IgnoresVeto().test_harmful_verdicts_end_like_a_run_that_never_compacts("sync")


class _ProbesWithoutTheRunSettings(TestDecoratorContract):
    """Probes the model with its defaults, not the run's temperature, max tokens and tool_choice."""

    def policy(self, model: ScriptedModel, *, asynchronous: bool) -> Any:
        return model.acall if asynchronous else model


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_contract_catches_probes_without_the_run_settings(mode):
    with pytest.raises(AssertionError, match="settings"):
        _ProbesWithoutTheRunSettings().test_probes_carry_the_run_settings(mode, 0.0)


class _CompactsDuringCooldown(TestDecoratorContract):
    """Runs the inner compaction first and asks the guard afterwards: it pays for it during a cooldown."""

    def compaction(self, variant: Variant, guard: Guard | None, model: ScriptedModel, inner: Counted, *,
                   asynchronous: bool) -> Any:
        if guard is None or variant == "plain":
            return super().compaction(variant, guard, model, inner, asynchronous=asynchronous)
        policy = self.policy(model, asynchronous=False)

        def compact(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
            candidate = inner(messages)  # paid whatever the gate would have said
            return guard.review(CompactionEvent(before=messages, candidate=candidate), policy).messages

        return compact


def test_the_contract_catches_an_inner_compaction_called_during_a_cooldown():
    with pytest.raises(AssertionError, match="during the cooldown"):
        _CompactsDuringCooldown().test_cooldown_skips_the_inner_compaction("sync")


class _LeaksAuditProbes(TestDecoratorContract):
    """Probes the recorded side itself, in the run's own context: the stream and the usage see it."""

    def compaction(self, variant: Variant, guard: Guard | None, model: ScriptedModel, inner: Counted, *,
                   asynchronous: bool) -> Any:
        if guard is None or variant == "plain" or guard.mode != "audit":
            return super().compaction(variant, guard, model, inner, asynchronous=asynchronous)
        policy = self.policy(model, asynchronous=False)

        def compact(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
            candidate = inner(messages)
            recorded = model(messages, RUN_SETTINGS)  # in the run's context: streamed and billed
            guard.review(CompactionEvent(before=messages, candidate=candidate, recorded_response=recorded), policy)
            return candidate

        return compact


def test_the_contract_catches_audit_probes_that_reach_the_stream_and_the_usage():
    with pytest.raises(AssertionError, match="stream"):
        _LeaksAuditProbes().test_audit_adds_nothing_to_the_stream("sync")
    with pytest.raises(AssertionError, match="usage"):
        _LeaksAuditProbes().test_audit_adds_nothing_to_the_usage("sync")


def test_a_field_left_none_skips_naming_it():
    class NoFields(TestDecoratorContract):
        def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode = "sync",
                      conversation: int = 0) -> AgentRun:
            run = super().run_agent(variant, guard, mode=mode, conversation=conversation)
            return AgentRun(transcript=run.transcript, model_calls=run.model_calls)

    for test, field_name in ((NoFields().test_cooldown_skips_the_inner_compaction, "compactions"),
                             (NoFields().test_audit_adds_nothing_to_the_stream, "streamed"),
                             (NoFields().test_audit_adds_nothing_to_the_usage, "usage")):
        with pytest.raises(pytest.skip.Exception, match=f"AgentRun.{field_name} is None"):
            test("sync")


def test_an_old_subclass_without_conversations_skips_the_concurrency_test():
    class Old(IntegrationContract):
        def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode) -> AgentRun:
            raise AssertionError("not reached")

    with pytest.raises(pytest.skip.Exception, match="conversation="):
        Old().test_concurrent_conversations_keep_their_decisions_apart("sync")
    with pytest.raises(pytest.skip.Exception, match="arun_agent"):
        Old().test_concurrent_conversations_keep_their_decisions_apart("async")


def test_recording_sink_counts_reviews_not_cooldown_vetoes():
    sink = RecordingSink()
    guard = Guard(ConstantScorer(1.0), sinks=[sink], identical_is_safe=False, cooldown=10)
    model = ScriptedModel()
    run_loop(model, guard.compaction(policy=model)(drop_middle), use_response=True)
    assert len(sink.reviews) == 1 and len(sink.decisions) > 1
