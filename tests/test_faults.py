"""Fault injection: every way the scorer, the scoring server or the agent probe can fail.

For each fault, each failure policy and each entry point (`review`, `areview`, the sync and the
async decorator) the test checks the promise: the agent is never crashed; with on_error="open"
it gets its compaction, with "closed" it keeps its history; the Decision and the JSONL record
carry the reason; and neither input list is mutated. The tally is printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from memguard import CompactionEvent, Guard, JSONLSink, Score, Verdict
from memguard.protocol import summary_message
from tests import figures
from tests.doubles import FactPolicy, swe_conversation

FACT = "FACT-42"
TIMEOUT = 0.15  # seconds: the guard's timeout in the hang cases
RELEASE = threading.Event()  # hung scorers/agents wait on this; released when the module ends

try:  # branch `remote`: a real client against a mock transport once it is on main
    from memguard.scoring.remote import RemoteMemRM, RemoteScorerError

    HAVE_REMOTE = True
except ImportError:  # until then: a scorer double raising what an httpx client raises
    RemoteMemRM = RemoteScorerError = None  # type: ignore[assignment,misc]
    HAVE_REMOTE = False


@pytest.fixture(scope="module", autouse=True)
def _release_hung_threads():
    yield
    RELEASE.set()


# --------------------------------------------------------------------------- fault catalogue


@dataclass
class Fault:
    """One way things go wrong: what to build, and what the Decision's error must mention."""

    name: str
    expect: str  # regex the Decision's error must match
    scorer: Callable[[], Any] | None = None  # default: a scorer that says SAFE (0.01)
    policy: Callable[[], Any] | None = None  # default: the fact-remembering agent
    guard_options: dict[str, Any] = field(default_factory=dict)


class _ScorerFault:
    """A scorer (sync `score` and async `ascore`) whose every call misbehaves via `behave`."""

    def __init__(self, behave: Callable[[list[str]], Any]) -> None:
        self.behave = behave
        self.calls = 0

    def score(self, prompts):
        self.calls += 1
        return self.behave(prompts)

    async def ascore(self, prompts):
        self.calls += 1
        if self.behave is _hang:  # a hung server call: awaits forever (until cancelled)
            await asyncio.sleep(30)
        return self.behave(prompts)


def _raise(exc: BaseException) -> Callable[[list[str]], Any]:
    def behave(prompts):
        raise exc

    return behave


def _value(p: float) -> Callable[[list[str]], Any]:
    return lambda prompts: [Score(p_harmful=p, n_tokens=1) for _ in prompts]


def _hang(prompts):
    RELEASE.wait(30)
    return [Score(p_harmful=0.0, n_tokens=1) for _ in prompts]


def _cuda_oom() -> BaseException:
    torch = pytest.importorskip("torch")
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def _safe_scorer():
    return _ScorerFault(_value(0.01))


# -- the scoring server (RemoteMemRM over httpx.MockTransport, or its exception types) --------


def _fake_vllm(fail: Callable[[httpx.Request], httpx.Response]):
    """A vLLM that lists the model and tokenizes, then fails on /generative_scoring."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/models":
            return httpx.Response(200, json={"data": [
                {"id": "memrm", "root": "/adapters/checkpoint-500", "parent": "base", "max_model_len": None}]})
        if path == "/tokenize":
            prompt = json.loads(request.content)["prompt"]
            labels = {" Y": [809], " N": [451]}
            head, tail = (prompt[:-2], labels[prompt[-2:]]) if prompt[-2:] in labels else (prompt, [])
            tokens = [1000 + ord(c) for c in head] + tail
            return httpx.Response(200, json={"tokens": tokens, "count": len(tokens), "max_model_len": 40_000})
        return fail(request)

    return handler


def _remote(fail: Callable[[httpx.Request], httpx.Response], simulated: BaseException) -> Callable[[], Any]:
    if not HAVE_REMOTE:
        return lambda: _ScorerFault(_raise(simulated))

    def build():
        transport = httpx.MockTransport(_fake_vllm(fail))
        return RemoteMemRM("http://rm.test", transport=transport, async_transport=transport,
                           retries=1, backoff=0.0, timeout=5.0)

    return build


def _raising_transport(exc_type: type[Exception]) -> Callable[[httpx.Request], httpx.Response]:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc_type("simulated", request=request)

    return fail


_REQUEST = httpx.Request("POST", "http://rm.test/generative_scoring")
_503 = httpx.Response(503, json={"error": {"message": "engine overloaded", "type": "ServiceUnavailable"}},
                      request=_REQUEST)

# -- the agent probe ------------------------------------------------------------------------------


class _FailingPolicy(FactPolicy):
    """The agent fails on every context (`everywhere`) or only on the compacted one."""

    def __init__(self, failure: str, everywhere: bool = True) -> None:
        super().__init__(FACT)
        self.failure, self.everywhere = failure, everywhere

    def misbehave_on(self, messages) -> bool:
        return self.everywhere or FACT not in json.dumps(messages, default=str)

    def __call__(self, messages):
        if self.misbehave_on(messages):
            if self.failure == "hang":
                RELEASE.wait(30)
            else:
                raise ConnectionError("agent API unreachable")
        return FactPolicy.__call__(self, messages)


class _AsyncFailingPolicy(_FailingPolicy):
    async def __call__(self, messages):  # type: ignore[override]
        if self.misbehave_on(messages):
            if self.failure == "hang":
                await asyncio.sleep(30)
            else:
                raise ConnectionError("agent API unreachable")
        return FactPolicy.__call__(self, messages)


def _policy(failure: str, *, everywhere: bool, is_async: bool) -> Callable[[], Any]:
    klass = _AsyncFailingPolicy if is_async else _FailingPolicy
    return lambda: klass(failure, everywhere=everywhere)


_TIMED = {"timeout": TIMEOUT}

FAULTS = [
    Fault("scorer raises", r"RuntimeError", scorer=lambda: _ScorerFault(_raise(RuntimeError("kernel died")))),
    Fault("scorer NaN", r"non-finite", scorer=lambda: _ScorerFault(_value(math.nan))),
    Fault("scorer +inf", r"non-finite", scorer=lambda: _ScorerFault(_value(math.inf))),
    Fault("scorer -inf", r"non-finite", scorer=lambda: _ScorerFault(_value(-math.inf))),
    Fault("scorer out of [0,1]", r"out-of-range", scorer=lambda: _ScorerFault(_value(1.5))),
    Fault("scorer too few scores", r"wrong number", scorer=lambda: _ScorerFault(lambda p: [])),
    Fault("scorer too many scores", r"wrong number",
          scorer=lambda: _ScorerFault(lambda p: [Score(p_harmful=0.0, n_tokens=1)] * (len(p) + 1))),
    Fault("scorer returns None", r"wrong number", scorer=lambda: _ScorerFault(lambda p: None)),
    Fault("scorer hangs past timeout", r"timeout", scorer=lambda: _ScorerFault(_hang), guard_options=_TIMED),
    Fault("scorer MemoryError", r"MemoryError", scorer=lambda: _ScorerFault(_raise(MemoryError()))),
    Fault("scorer CUDA OOM", r"OutOfMemoryError", scorer=lambda: _ScorerFault(_raise(_cuda_oom()))),
    Fault("remote refuses connection", r"could not reach|ConnectError",
          scorer=_remote(_raising_transport(httpx.ConnectError), httpx.ConnectError("connection refused"))),
    Fault("remote read timeout", r"no answer within|ReadTimeout",
          scorer=_remote(_raising_transport(httpx.ReadTimeout), httpx.ReadTimeout("timed out"))),
    Fault("remote answers 503", r"HTTP 503|HTTPStatusError",
          scorer=_remote(lambda r: httpx.Response(503, json={"error": {"message": "engine overloaded"}}),
                         httpx.HTTPStatusError("503 Service Unavailable", request=_REQUEST, response=_503))),
    Fault("remote answers malformed JSON", r"malformed|JSONDecodeError",
          scorer=_remote(lambda r: httpx.Response(200, content=b'{"data": [{"index": 0, "sc'),
                         json.JSONDecodeError("Unterminated string", '{"data": [{"index": 0, "sc', 22))),
    Fault("probe raises (sync agent)", r"ConnectionError",
          policy=_policy("raise", everywhere=True, is_async=False)),
    Fault("probe raises (async agent)", r"ConnectionError",
          policy=_policy("raise", everywhere=True, is_async=True)),
    Fault("probe hangs (sync agent)", r"timeout", policy=_policy("hang", everywhere=True, is_async=False),
          guard_options=_TIMED),
    Fault("probe hangs (async agent)", r"timeout", policy=_policy("hang", everywhere=True, is_async=True),
          guard_options=_TIMED),
    Fault("probe raises on compacted context only", r"ConnectionError",
          policy=_policy("raise", everywhere=False, is_async=False)),
    Fault("probe hangs on compacted context only (async)", r"timeout",
          policy=_policy("hang", everywhere=False, is_async=True), guard_options=_TIMED),
]
ENTRY_POINTS = ["review", "areview", "decorator", "async decorator"]
figures.note("faults: kinds injected", len(FAULTS))
figures.note("faults: remote scorer", "RemoteMemRM over httpx.MockTransport" if HAVE_REMOTE else
             "simulated (branch `remote` not on main yet): a scorer raising httpx's exception types")


# --------------------------------------------------------------------------- the check


def lossy(messages):
    """A compaction that forgets the fact (so an RM that works would veto it)."""
    return [*messages[:2], summary_message("did things"), *messages[-4:]]


async def run_entry_point(entry: str, guard: Guard, policy: Any, before: list, candidate: list):
    """Run one entry point; returns (decision, messages handed back to the agent)."""
    event = CompactionEvent(before=before, candidate=candidate, strategy="summary")
    if entry == "review":
        decision = await asyncio.to_thread(guard.review, event, policy)
        return decision, decision.messages
    if entry == "areview":
        decision = await guard.areview(event, policy)
        return decision, decision.messages
    if entry == "decorator":
        wrapped = guard.compaction(policy=policy)(lambda messages: candidate)
        # On another thread: that thread's decision comes back with its messages (last_decision
        # is per thread and task, so this task's would be None).
        result, decision = await asyncio.to_thread(wrapped.with_decision, before)
        return decision, result

    async def compact(messages):
        return candidate

    wrapped = guard.compaction(policy=policy)(compact)
    result = await wrapped(before)
    return wrapped.last_decision, result


@pytest.mark.parametrize("on_error", ["open", "closed"])
@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_fault_never_crashes_and_follows_on_error(fault: Fault, entry: str, on_error: str, tmp_path):
    before = swe_conversation(n_turns=6, fact=FACT, fact_turn=1)
    candidate = lossy(before)
    snapshot = copy.deepcopy((before, candidate))
    scorer = (fault.scorer or _safe_scorer)()
    policy = (fault.policy or (lambda: FactPolicy(FACT)))()
    log = tmp_path / "audit.jsonl"
    guard = Guard(scorer, on_error=on_error, sinks=[JSONLSink(log)], cooldown=0, identical_is_safe=False,
                  **fault.guard_options)

    decision, handed_back = await run_entry_point(entry, guard, policy, before, candidate)
    guard.close()

    figures.count("faults: cases run (fault x entry point x on_error)")
    assert decision.error and re.search(fault.expect, decision.error), decision.error
    if on_error == "open":
        assert decision.verdict is Verdict.COMMIT
        assert handed_back == candidate
        assert any("failing open" in r and decision.error in r for r in decision.reasons)
    else:
        assert decision.verdict is Verdict.VETO
        assert handed_back == before and all(a is b for a, b in zip(handed_back, before))
        assert any("failing closed" in r and decision.error in r for r in decision.reasons)
    (line,) = log.read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert (record["verdict"], record["error"], record["reasons"]) == (
        decision.verdict.value, decision.error, decision.reasons)
    assert (before, candidate) == snapshot  # nothing mutated in place
    if HAVE_REMOTE and isinstance(scorer, RemoteMemRM):
        figures.count("faults: cases through RemoteMemRM + httpx.MockTransport")

