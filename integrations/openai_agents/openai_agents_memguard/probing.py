"""Probing the agent: its model's next response on any context, called the way the Runner calls it.

MemRM judges a compaction by the agent's next action under the full and under the compacted
context, so memguard asks the agent's own model for both. A probe passes the agent's tools,
handoffs, output schema, prompt and model settings, so its answer is the answer the run would
get; tracing is off (a probe is not a turn of the run). Every response is kept with the input it
answered, so the one that wins can stand in for the run's own model call (see `reuse`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from agents import (
    Agent,
    AgentOutputSchema,
    AgentOutputSchemaBase,
    Handoff,
    Model,
    ModelResponse,
    ModelSettings,
    ModelTracing,
    RunContextWrapper,
    handoff,
)

from openai_agents_memguard.items import ITEMS_KEY, from_view, to_view

__all__ = ["AgentProbe", "Probe", "probe_model"]


def probe_model(agent: Agent[Any], model: Model | None) -> Model:
    """The model to probe: `model` when given, else the agent's own (a wrapper is looked through)."""
    from openai_agents_memguard.reuse import MemGuardModel

    chosen: Any = model if model is not None else agent.model
    while isinstance(chosen, MemGuardModel):
        chosen = chosen.inner
    if not isinstance(chosen, Model):
        named = f"names its model {chosen!r}" if chosen else "uses the run's default model"
        raise ValueError(
            f"agent {agent.name!r} {named}; memguard must call that model to probe the agent: "
            "pass model=<the agents.Model instance the run uses> (for example "
            "OpenAIResponsesModel(...) or MultiProvider().get_model(name))"
        )
    return chosen


@dataclass
class Probe:
    """One probe: the input the model saw and what it answered."""

    instructions: str | None
    items: list[Any]
    response: ModelResponse


async def _enabled_handoffs(agent: Agent[Any], wrapper: RunContextWrapper[Any]) -> list[Handoff[Any, Any]]:
    handoffs: list[Handoff[Any, Any]] = []
    for entry in agent.handoffs:
        item = entry if isinstance(entry, Handoff) else handoff(entry)
        enabled: Any = item.is_enabled
        if callable(enabled):
            enabled = enabled(wrapper, agent)
            if inspect.isawaitable(enabled):
                enabled = await enabled
        if enabled:
            handoffs.append(item)
    return handoffs


def _output_schema(agent: Agent[Any]) -> AgentOutputSchemaBase | None:
    if agent.output_type is None or agent.output_type is str:
        return None
    if isinstance(agent.output_type, AgentOutputSchemaBase):
        return agent.output_type
    return AgentOutputSchema(agent.output_type)


class AgentProbe:
    """The memguard policy for one agent: view messages in, the model's next turn (a view message) out."""

    def __init__(self, agent: Agent[Any], context: Any, model: Model,
                 settings: ModelSettings | None = None) -> None:
        self.agent = agent
        self.model = model
        self.settings = settings if settings is not None else agent.model_settings
        self._wrapper = RunContextWrapper(context)
        self._setup: tuple[list[Any], list[Handoff[Any, Any]], AgentOutputSchemaBase | None, Any] | None = None
        self._probes: dict[int, tuple[Any, Probe]] = {}

    async def _resolved(self) -> tuple[list[Any], list[Handoff[Any, Any]], AgentOutputSchemaBase | None, Any]:
        # No lock: audit reviews probe from the guard's worker, possibly on another event loop,
        # and resolving twice is harmless.
        if self._setup is None:
            tools = await self.agent.get_all_tools(self._wrapper)
            handoffs = await _enabled_handoffs(self.agent, self._wrapper)
            prompt = await self.agent.get_prompt(self._wrapper)
            self._setup = (tools, handoffs, _output_schema(self.agent), prompt)
        return self._setup

    async def __call__(self, messages: list[Any]) -> dict[str, Any]:
        instructions, items = from_view(messages)
        return await self.call(instructions, items)

    async def call(self, instructions: str | None, items: list[Any]) -> dict[str, Any]:
        """Probe on SDK items directly; returns the response as an assistant view message."""
        tools, handoffs, schema, prompt = await self._resolved()
        response = await self.model.get_response(
            instructions, list(items), self.settings, tools, schema, handoffs, ModelTracing.DISABLED,
            previous_response_id=None, conversation_id=None, prompt=prompt,
        )
        action = _action_message(response)
        self._probes[id(action)] = (action, Probe(instructions, list(items), response))
        return action

    def probe_for(self, action: Any) -> Probe | None:
        """The probe whose answer is `action` (the object the guard handed back), if it was ours."""
        found = self._probes.get(id(action))
        return found[1] if found is not None and found[0] is action else None


def _action_message(response: ModelResponse) -> dict[str, Any]:
    """The model's turn as MemRM reads it: the first assistant turn of its output."""
    for message in to_view(response.to_input_items()):
        if message.get("role") == "assistant":
            return message
    return {"role": "assistant", "content": "", ITEMS_KEY: []}
