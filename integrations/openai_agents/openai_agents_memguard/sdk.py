"""The Runner's own rules for building a model request, imported from the SDK in one place.

A probe must be the request the run would send, so memguard does not re-derive how the Runner
resolves a model, its settings, tools, handoffs and output schema, or how it turns a turn's
items into model input: it calls the SDK's functions for each. Several live in
`agents.run_internal` (not public API), which is why the integration pins `openai-agents` to one
minor series; this module is the only place that imports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents import Agent, ItemHelpers, Model, ModelSettings, RunConfig, RunContextWrapper
from agents._tool_identity import resolve_tool_name_collisions
from agents.run_internal.items import (
    deduplicate_input_items_preferring_latest,
    prepare_model_input_items,
    run_items_to_input_items,
)
from agents.run_internal.turn_preparation import (
    get_handoffs,
    get_model,
    get_model_settings,
    get_output_schema,
)
from agents.tracing import get_current_trace
from agents.tracing.model_tracing import get_model_tracing_impl

from openai_agents_memguard.requests import ModelRequest

__all__ = ["dedup", "next_request", "resolve_model", "turn_input"]


def dedup(items: Sequence[Any]) -> list[Any]:
    """What the Runner does to a filtered input before sending it (the latest of repeated ids wins)."""
    return deduplicate_input_items_preferring_latest(list(items))


def turn_input(caller_input: str | Sequence[Any], generated: Sequence[Any]) -> list[Any]:
    """The model input of a turn: the run's input and the items generated so far (`RunItem`s)."""
    given: Any = caller_input if isinstance(caller_input, str) else list(caller_input)
    caller = ItemHelpers.input_to_new_input_list(given)
    return dedup(prepare_model_input_items(caller, run_items_to_input_items(list(generated))))


def resolve_model(agent: Agent[Any], run_config: RunConfig | None, model: Model | None) -> Any:
    """The model the run calls for `agent`: `model` when given, else as the Runner resolves it."""
    if model is not None:
        return model
    if run_config is not None and (run_config.model is not None or isinstance(agent.model, Model)):
        return get_model(agent, run_config)
    return agent.model


def settings_for(agent: Agent[Any], run_config: RunConfig | None) -> ModelSettings:
    """The agent's settings merged with the run's (`RunConfig.model_settings`), as the Runner merges them."""
    return get_model_settings(agent, run_config if run_config is not None else RunConfig())


async def next_request(agent: Agent[Any], wrapper: RunContextWrapper[Any], run_config: RunConfig | None,
                       items: Sequence[Any], *, audit: bool = False) -> ModelRequest:
    """The request the Runner sends for `agent`'s next turn on `items` (first call of that agent in the run).

    Tools, enabled handoffs, output schema, prompt and instructions are the agent's own; settings
    are its settings merged with the run's; the tracing flag is the run's (disabled for audit
    probes, which are no part of the run). A forced `tool_choice` is kept: the Runner resets it
    only after the agent used a tool in this run, which a history rewrite does not know.
    """
    config = run_config if run_config is not None else RunConfig()
    tools = await agent.get_all_tools(wrapper)
    handoffs = await get_handoffs(agent, wrapper)
    tools, handoffs = resolve_tool_name_collisions(tools, handoffs, collision_policy=config.tool_name_collision_policy)
    traced = not audit and get_current_trace() is not None
    tracing = get_model_tracing_impl(not traced or config.tracing_disabled, config.trace_include_sensitive_data)
    return ModelRequest(
        instructions=await agent.get_system_prompt(wrapper),
        input=list(items),
        settings=settings_for(agent, run_config),
        tools=list(tools),
        output_schema=get_output_schema(agent),
        handoffs=list(handoffs),
        tracing=tracing,
        prompt=await agent.get_prompt(wrapper),
    )
