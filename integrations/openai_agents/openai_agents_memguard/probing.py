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
    """The model to probe: `model`, else the agent's own; a `MemGuardModel` is looked through.

    memguard must call the very model the run calls, so a model named by string (resolved by the
    Runner's provider) is not enough.

    Args:
        agent: The agent to probe.
        model: The model instance the run calls for it, if known.

    Returns:
        The `agents.Model` instance to send probes to.

    Raises:
        ValueError: No instance was given and the agent names its model by string, or uses the
            run's default model.
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
    """The request sent."""
    response: ModelResponse
    """The model's answer."""


class RequestProbe:
    """The memguard policy for one request: view messages in, the model's next turn (a view message) out.

    Each probe is `request` with only its instructions and input replaced, so its answer is the
    answer the run would get. Every answer is kept with the request it answered, so the one that
    wins the review can stand in for the run's own call (`probe_for`).

    Args:
        model: The agent's model.
        request: The request the run sends, or would send next.
        extra_input: Items appended to every probe's input (a typical next user message).
    """

    def __init__(self, model: Model, request: ModelRequest, *, extra_input: list[Any] | None = None) -> None:
        self.model = model
        self.request = request
        self.extra_input = list(extra_input or [])
        self._probes: dict[int, tuple[Any, Probe]] = {}

    async def __call__(self, messages: list[Any]) -> dict[str, Any]:
        instructions, items = from_view(messages)
        return await self.call(instructions, items)

    async def call(self, instructions: str | None, items: list[Any]) -> dict[str, Any]:
        """Probe on SDK items directly.

        Args:
            instructions: The instructions to send.
            items: The input items to send (`extra_input` is appended).

        Returns:
            The model's turn as an assistant view message (see `to_view`).
        """
        request = self.request.with_input(instructions, [*items, *self.extra_input])
        response = await request.get_response(self.model)
        action = action_message(response)
        self._probes[id(action)] = (action, Probe(request, response))
        return action

    def probe_for(self, action: Any) -> Probe | None:
        """The probe whose answer is `action`.

        Args:
            action: The response the guard's decision carries (`Decision.response`).

        Returns:
            The probe that produced that very object, or None when it was not one of ours.
        """
        found = self._probes.get(id(action))
        return found[1] if found is not None and found[0] is action else None


def action_message(response: ModelResponse) -> dict[str, Any]:
    """The model's turn as MemRM reads it: the first assistant turn of its output."""
    for message in to_view(response.to_input_items()):
        if message.get("role") == "assistant":
            return message
    return {"role": "assistant", "content": "", ITEMS_KEY: []}
