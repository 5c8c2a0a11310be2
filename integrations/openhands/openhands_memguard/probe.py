"""The agent's next step on a given context: the policy the guard probes.

A condenser is handed the agent's LLM (``agent_llm``) but not the agent, so the probe rebuilds
the agent's own call: the context's events through `events_to_messages`, the tools the agent
offered (those in the conversation's `SystemPromptEvent`, unless given), and the same
``generate`` options `Agent.step` uses. A `Condensation` ends the agent's step, so a probe can
never be reused as the step's response: each review costs two extra LLM calls.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from typing import Any

from openhands.sdk.event import LLMConvertibleEvent
from openhands.sdk.event.llm_convertible import SystemPromptEvent
from openhands.sdk.llm import LLM, LLMResponse
from openhands.sdk.tool import ToolDefinition

from openhands_memguard.views import GuardView

__all__ = ["AgentProbe", "tools_of"]


def tools_of(events: Sequence[LLMConvertibleEvent]) -> list[ToolDefinition[Any, Any]]:
    """The tools the agent offered in this conversation (its system prompt event's)."""
    for event in events:
        if isinstance(event, SystemPromptEvent):
            return list(event.tools)
    return []


class AgentProbe:
    """Calls the agent's LLM on a guard context and answers with the next message as a dict.

    Probes may run on the guard's worker threads (parallel probes): they run in a copy of the
    caller's context, so OpenHands' per-conversation LLM call context follows them.

    Args:
        llm: The agent's LLM.
        tools: The tools the agent offers.
        view: The review's view, to turn guard contexts into events and answers into dicts; None
            until an audit review's worker builds it (the condenser sets `view` then).
        isolated: An audit review's probe, no part of the run: it calls a copy of the LLM with
            metrics of its own (nothing is billed to the conversation's stats) in an empty context.
    """

    def __init__(self, llm: LLM, tools: Sequence[ToolDefinition[Any, Any]], view: GuardView | None, *,
                 isolated: bool = False) -> None:
        if isolated:
            llm = llm.model_copy()
            llm.reset_metrics()
        self.llm = llm
        self.tools = list(tools)
        self.view = view
        self.calls = 0
        """LLM calls made so far."""
        self._context = contextvars.Context() if isolated else contextvars.copy_context()

    def _view(self) -> GuardView:
        if self.view is None:
            raise RuntimeError("the review's view is not built yet (an audit review builds it on the guard's worker)")
        return self.view

    def _messages(self, context: list[Any]) -> Any:
        return LLMConvertibleEvent.events_to_messages(self._view().to_events(context))

    def _answer(self, response: LLMResponse) -> dict[str, Any]:
        return self._view().response(response.message)

    def __call__(self, context: list[Any]) -> dict[str, Any]:
        messages = self._messages(context)
        self.calls += 1
        response = self._context.copy().run(
            self.llm.generate, messages=messages, tools=self.tools, store=False, add_security_risk_prediction=True,
        )
        return self._answer(response)

    async def acall(self, context: list[Any]) -> dict[str, Any]:
        """The async probe (for `Guard.areview`): ``LLM.agenerate`` on the running loop.

        Args:
            context: A guard context: the dicts of a `GuardView`, or a strategy's list of them.

        Returns:
            The agent's next message, as MemRM reads actions (`GuardView.response`).
        """
        messages = self._messages(context)
        self.calls += 1
        response = await self.llm.agenerate(
            messages=messages, tools=self.tools, store=False, add_security_risk_prediction=True,
        )
        return self._answer(response)
