"""Probes are the requests ADK would send: rebuilt by its own contents processor, on a real run."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from google.adk.agents.callback_context import CallbackContext
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.plugins.base_plugin import BasePlugin
from google.genai import types
from memguard import Guard, Verdict
from memguard.testing.contract import ConstantScorer, RecordingSink

from adk_doubles import (
    DYNAMIC_INSTRUCTION,
    SCRIPTS,
    DroppingSummarizer,
    ScriptedLlm,
    make_app,
    run_conversation,
    transcript,
)
from google_adk_memguard import CandidateUnavailable, build_contents, contents_with, guard_app, probe_request

IN_FLOW = SCRIPTS["in_flow"]


class Spy(BasePlugin):
    """Rebuilds every real request with ADK's builder, from inside the run."""

    def __init__(self) -> None:
        super().__init__(name="spy")
        self.matches: list[bool] = []

    async def before_model_callback(self, *, callback_context: CallbackContext,
                                    llm_request: LlmRequest) -> LlmResponse | None:
        ctx = callback_context._invocation_context
        rebuilt = await build_contents(ctx, ctx.session.events, llm_request)
        self.matches.append(rebuilt == llm_request.contents and rebuilt is not llm_request.contents)
        same = await contents_with(ctx, llm_request, ctx.session.events, list(ctx.session.events))
        self.matches.append(same == llm_request.contents)
        return None


class Rewriter(BasePlugin):
    """A user's plugin that changes the request before memguard's sees it: `where` = "tail" or "head"."""

    def __init__(self, where: str) -> None:
        super().__init__(name=f"rewrite_{where}")
        self.where = where

    async def before_model_callback(self, *, callback_context: CallbackContext,
                                    llm_request: LlmRequest) -> LlmResponse | None:
        index = -1 if self.where == "tail" else 0
        content = llm_request.contents[index].model_copy(deep=True)
        part = content.parts[0]
        if part.function_response is not None:
            part.function_response.response = {**(part.function_response.response or {}), "checked": True}
        else:
            part.text = (part.text or "") + " [checked]"
        llm_request.contents[index] = content
        return None


def contents_key(contents: list[types.Content]) -> str:
    return json.dumps([content.model_dump(mode="json", exclude_none=True) for content in contents], sort_keys=True)


def run(guarded: bool, scorer_p: float = 0.0, plugins: tuple[Any, ...] = (), mode: str = "enforce", **options: Any):
    llm = ScriptedLlm(steps_per_turn=IN_FLOW.steps_per_turn)
    app = make_app(llm, DroppingSummarizer(), "in_flow", plugins, **options)
    sink = RecordingSink()
    guard = Guard(ConstantScorer(scorer_p), sinks=[sink], identical_is_safe=False, mode=mode)  # type: ignore[arg-type]
    if guarded:
        app = guard_app(app, guard)
    outcome = run_conversation(app, IN_FLOW)
    guard.close()
    return outcome, llm, sink


def test_adks_builder_rebuilds_every_real_request_exactly():
    spy = Spy()
    run(False, plugins=(spy,))
    assert spy.matches and all(spy.matches)


def test_the_candidate_probe_is_the_request_adk_sends_once_the_compaction_is_applied():
    _, compacting, _ = run(False)
    _, guarded, sink = run(True)
    assert sink.reviews
    sent = {contents_key(call) for call in guarded.calls}
    assert all(contents_key(call) in sent for call in compacting.calls)
    assert set(compacting.signatures) == set(guarded.signatures)  # same model, settings, tools, labels


def test_instruction_contents_go_back_where_adk_puts_them():
    """With a static instruction ADK moves the dynamic one into the contents: rebuilt, not lost."""
    options = {"static_instruction": "Stable prefix.", "instruction": DYNAMIC_INSTRUCTION}
    compacting, _, _ = run(False, **options)
    guarded, _, sink = run(True, **options)
    assert sink.reviews and all(d.verdict is Verdict.COMMIT for d in sink.decisions)
    assert transcript(guarded) == transcript(compacting)


def test_a_request_another_plugin_changed_in_its_tail_is_spliced():
    compacting, _, _ = run(False, plugins=(Rewriter("tail"),))
    guarded, _, sink = run(True, plugins=(Rewriter("tail"),))
    assert sink.reviews and all(d.verdict is Verdict.COMMIT for d in sink.decisions)
    assert transcript(guarded) == transcript(compacting)


def test_a_request_rewritten_where_the_compaction_applies_is_refused_not_guessed():
    plain_llm = ScriptedLlm(steps_per_turn=IN_FLOW.steps_per_turn)
    plain = run_conversation(make_app(plain_llm, None, "in_flow", (Rewriter("head"),)), IN_FLOW)
    guarded, _, sink = run(True, plugins=(Rewriter("head"),))
    failures = [d for d in sink.decisions if d.error]
    assert failures and all("CandidateUnavailable" in (d.error or "") and not d.reviewed for d in failures)
    assert all(d.verdict is Verdict.VETO for d in failures)
    # The run went on with its full context (only the post-invocation review, which builds from the
    # session, could compact): it answers like the run that never compacts.
    assert transcript(guarded)["outputs"] == transcript(plain)["outputs"]
    last_answer = max(i for i, event in enumerate(guarded.events) if event.content and event.content.role == "model")
    assert not any(event.actions.compaction for event in guarded.events[:last_answer])


def test_in_audit_mode_a_request_that_cannot_be_rebuilt_ends_as_a_written_audit_failure():
    """The worker builds the audit candidates: a request it cannot rebuild is counted and written, never lost."""
    compacting, _, _ = run(False, plugins=(Rewriter("head"),))
    guarded, _, sink = run(True, plugins=(Rewriter("head"),), mode="audit")
    assert transcript(guarded) == transcript(compacting)  # audit changes nothing the run does
    failed = [d for d in sink.decisions if d.skipped == "audit_failed"]
    assert failed and all(d.error == "audit failed: CandidateUnavailable" and not d.reviewed for d in failed)


def test_contents_with_names_the_problem():
    with pytest.raises(CandidateUnavailable, match="cannot be rebuilt"):
        from google_adk_memguard.rebuild import _splice

        _splice([types.Content(role="user", parts=[types.Part(text="x")])],
                [types.Content(role="user", parts=[types.Part(text="y")])], [])


def test_a_probe_has_its_own_contents_and_config_and_carries_the_runs_settings():
    tools = [types.Tool(function_declarations=[types.FunctionDeclaration(name="bash")])]
    request = LlmRequest(
        model="scripted-agent",
        contents=[types.Content(role="user", parts=[types.Part(text="hi")])],
        config=types.GenerateContentConfig(temperature=0.3, max_output_tokens=200, tools=tools),
    )
    probe = probe_request(request, request.contents, "coder")
    assert probe.contents == request.contents and probe.contents is not request.contents
    assert probe.contents[0] is not request.contents[0]
    assert probe.config is not request.config and probe.config.labels == {"adk_agent_name": "coder"}
    assert request.config.labels is None  # the real request is not touched
    assert (probe.config.temperature, probe.config.max_output_tokens, probe.config.tools) == (0.3, 200, tools)
    llm = ScriptedLlm()

    async def ask() -> None:
        async for _ in llm.generate_content_async(probe):
            pass

    asyncio.run(ask())
    assert len(probe.contents) == 2 and len(request.contents) == 1  # the model appended to its own copy
