"""Probing the agent: the run's own model request, sent on another context.

MemRM judges a compaction by the agent's next action under the full and under the compacted
context, so memguard asks the agent's own model for both. A probe is a `ModelRequest` the run
sends (or would send next) with only its instructions and input replaced, so its answer is the
answer the run would get. Every response is kept with the request it answered, so the one that
wins the review can stand in for the run's own call (see `reuse`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents import Agent, Model, ModelResponse

from openai_agents_memguard.items import ITEMS_KEY, from_view, to_view
from openai_agents_memguard.requests import ModelRequest

__all__ = ["Probe", "RequestProbe", "action_message", "probe_model"]


def probe_model(agent: Agent[Any], model: Any) -> Model:
    """The model to probe (a `MemGuardModel` is looked through): `model`, else the agent's own.

    Raises:
        ValueError: the agent names its model by string and no instance was given (memguard must
            call the very model the run calls).
    """
    from openai_agents_memguard.reuse import MemGuardModel

    chosen: Any = model if model is not None else agent.model
    while isinstance(chosen, MemGuardModel):
        chosen = chosen.inner
    if not isinstance(chosen, Model):
        named = f"names its model {chosen!r}" if chosen else "uses the run's default model"
        raise ValueError(
            f"agent {agent.name!r} {named}; memguard must call that model to probe the agent: "
            "pass model=<the agents.Model instance the run uses> (for example "
            "OpenAIResponsesModel(...) or MultiProvider().get_model(name)), or run_config= when "
            "RunConfig(model=...) names it"
        )
    return chosen


@dataclass
class Probe:
    """One probe: the request sent and what it answered."""

    request: ModelRequest
    response: ModelResponse


class RequestProbe:
    """The memguard policy for one request: view messages in, the model's next turn (a view message) out."""

    def __init__(self, model: Model, request: ModelRequest, *, extra_input: list[Any] | None = None) -> None:
        self.model = model
        self.request = request
        self.extra_input = list(extra_input or [])
        self._probes: dict[int, tuple[Any, Probe]] = {}

    async def __call__(self, messages: list[Any]) -> dict[str, Any]:
        instructions, items = from_view(messages)
        return await self.call(instructions, items)

    async def call(self, instructions: str | None, items: list[Any]) -> dict[str, Any]:
        """Probe on SDK items directly; returns the response as an assistant view message."""
        request = self.request.with_input(instructions, [*items, *self.extra_input])
        response = await request.get_response(self.model)
        action = action_message(response)
        self._probes[id(action)] = (action, Probe(request, response))
        return action

    def probe_for(self, action: Any) -> Probe | None:
        """The probe whose answer is `action` (the object the guard handed back), if it was ours."""
        found = self._probes.get(id(action))
        return found[1] if found is not None and found[0] is action else None


def action_message(response: ModelResponse) -> dict[str, Any]:
    """The model's turn as MemRM reads it: the first assistant turn of its output."""
    for message in to_view(response.to_input_items()):
        if message.get("role") == "assistant":
            return message
    return {"role": "assistant", "content": "", ITEMS_KEY: []}
