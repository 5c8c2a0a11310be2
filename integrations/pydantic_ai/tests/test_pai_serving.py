"""Probes are the request the run would send, and a probe answers only that same request.

Runs at both ends of the Pydantic AI range, with a `before_model_request` compaction of the user's
own (`test_pai_contract.KeepTaskAndLastStep`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from memguard import Guard
from memguard.testing.contract import ConstantScorer
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ModelRequest, ModelResponse, TextPart, UserPromptPart
from pydantic_ai.models import ModelRequestContext, ModelRequestParameters
from pydantic_ai.models.function import FunctionModel
from pydantic_ai.tools import RunContext, ToolDefinition

from pai_doubles import TASK, ScriptedModel, make_agent, transcript
from pydantic_ai_memguard import MemGuardCompaction, outgoing, request_key
from test_pai_contract import KeepTaskAndLastStep

SETTINGS: Any = {"temperature": 0.3, "max_tokens": 77}


@dataclass
class WarmerLater(AbstractCapability[None]):
    """Ordered after memguard: changes every request's temperature once memguard's hook has run."""

    async def before_model_request(
        self, ctx: RunContext[None], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        return replace(request_context, model_settings={**(request_context.model_settings or {}), "temperature": 0.9})


def guarded_run(scorer: Any, *capabilities: Any, **run_options: Any) -> tuple[Any, ScriptedModel, list[Any]]:
    model, decisions = ScriptedModel(), []
    guard = Guard(scorer, identical_is_safe=False, cooldown=0)
    compaction = MemGuardCompaction(KeepTaskAndLastStep(), guard, on_decision=decisions.append)
    try:
        return make_agent(model, [compaction, *capabilities]).run_sync(TASK, **run_options), model, decisions
    finally:
        guard.close()


def test_probes_carry_the_run_settings_tools_and_instructions():
    result, model, _ = guarded_run(ConstantScorer(0.0), model_settings=SETTINGS)
    unguarded = ScriptedModel()
    make_agent(unguarded, [KeepTaskAndLastStep()]).run_sync(TASK, model_settings=SETTINGS)
    assert model.calls > unguarded.calls  # the reviews probed

    def shape(info: Any) -> tuple[Any, ...]:
        return (info.model_settings, [t.name for t in info.function_tools], info.instructions, info.allow_text_output)

    assert {repr(shape(info)) for info in model.infos} == {repr(shape(info)) for info in unguarded.infos}


def test_a_probe_answers_only_the_same_request():
    """A capability after memguard changes the request's settings: the probe (sent without the change)
    is not served as the step's answer; the model answers the request the run really made."""
    unguarded = ScriptedModel()
    expected = make_agent(unguarded, [KeepTaskAndLastStep(), WarmerLater()]).run_sync(TASK)
    result, model, decisions = guarded_run(ConstantScorer(0.0), WarmerLater())
    warm = [info for info in model.infos if (info.model_settings or {}).get("temperature") == 0.9]
    assert decisions and len(warm) == unguarded.calls  # every step was answered by a request sent at 0.9
    assert model.calls == unguarded.calls + 2 * len(decisions)  # so no probe (sent without the change) was reused
    assert transcript(result.all_messages()) == transcript(expected.all_messages())


def test_the_match_key_holds_messages_settings_tools_and_output_schema():
    model = FunctionModel(lambda messages, info: ModelResponse(parts=[TextPart("ok")]), model_name="m")
    messages = [ModelRequest(parts=[UserPromptPart("hi")])]
    tool = ToolDefinition(name="bash", parameters_json_schema={"type": "object", "properties": {}})
    parameters = ModelRequestParameters(function_tools=[tool], allow_text_output=True)
    base = request_key(model, messages, {"temperature": 0.3}, parameters)
    assert base == request_key(model, list(messages), {"temperature": 0.3}, replace(parameters))
    variants = [
        request_key(model, [ModelRequest(parts=[UserPromptPart("hi!")])], {"temperature": 0.3}, parameters),
        request_key(model, messages, {"temperature": 0.4}, parameters),
        request_key(model, messages, {"temperature": 0.3, "tool_choice": "required"}, parameters),  # type: ignore[typeddict-unknown-key]
        request_key(model, messages, {"temperature": 0.3}, replace(parameters, function_tools=[])),
        request_key(model, messages, {"temperature": 0.3}, replace(parameters, output_tools=[tool])),
        request_key(model, messages, {"temperature": 0.3}, replace(parameters, allow_text_output=False)),
        request_key(FunctionModel(model.function, model_name="other"), messages, {"temperature": 0.3}, parameters),
    ]
    assert base not in variants and len(set(variants)) == len(variants)


def test_outgoing_prepares_messages_as_the_loop_does():
    model = FunctionModel(lambda messages, info: ModelResponse(parts=[TextPart("ok")]), model_name="m")
    split = [ModelRequest(parts=[UserPromptPart("one")]), ModelRequest(parts=[UserPromptPart("two")])]
    sent, _ = outgoing(model, split, None, ModelRequestParameters())
    assert len(sent) == 1 and [p.content for p in sent[0].parts] == ["one", "two"]  # merged, as the loop sends it
