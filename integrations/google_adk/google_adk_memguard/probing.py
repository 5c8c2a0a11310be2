"""Asking the agent's own model for its next step on a given request, off the run's own path.

A probe sends one `LlmRequest` (a copy of the step's real request, or one rebuilt with a
compaction applied: see `rebuild`) straight to the model the flow would call, streamed when the
run streams, and keeps the complete response. It goes around the flow on purpose: no callbacks,
no events, no `max_llm_calls` charge; the plugin charges the one probe it serves as the step's
response (`serve`), exactly as the skipped call would have been charged.
"""

from __future__ import annotations

from typing import Any

from google.adk.agents.invocation_context import InvocationContext
from google.adk.agents.readonly_context import ReadonlyContext
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse

__all__ = ["agent_model", "probe", "streaming"]


async def agent_model(ctx: InvocationContext) -> BaseLlm:
    """The model the flow calls for this invocation's agent (resolved as ADK resolves it).

    Raises:
        TypeError: The agent has no model (not an LLM agent).
    """
    agent: Any = ctx.agent
    resolve = getattr(agent, "canonical_model_async", None)
    if callable(resolve):
        model = await resolve(ReadonlyContext(ctx))
    elif hasattr(agent, "canonical_model"):
        model = agent.canonical_model
    else:
        raise TypeError(f"agent {type(agent).__name__} has no model to probe")
    if not isinstance(model, BaseLlm):
        raise TypeError(f"agent {type(agent).__name__} resolved {type(model).__name__}, not a BaseLlm")
    return model


def streaming(ctx: InvocationContext) -> bool:
    """Whether the run streams its model calls (SSE): a probe is sent the same way."""
    run_config = ctx.run_config
    mode = getattr(run_config, "streaming_mode", None)
    return getattr(mode, "value", None) == "sse"  # StreamingMode.SSE (its module moved in ADK 2)


async def probe(model: BaseLlm, request: LlmRequest, *, stream: bool) -> LlmResponse:
    """The model's complete response to `request`.

    The probe goes around the flow on purpose: no callbacks, no events, no `max_llm_calls`
    charge (the plugin charges the one probe it serves as the step's response).

    Args:
        model: The model the flow would call.
        request: The request to send (see `probe_request`).
        stream: Send it streamed, as the run does.

    Returns:
        The complete response (the last non-partial one when streamed).

    Raises:
        RuntimeError: The model gave no complete response.
    """
    final: LlmResponse | None = None
    async for response in model.generate_content_async(request, stream=stream):
        if not response.partial:
            final = response
    if final is None:
        raise RuntimeError(f"model {model.model!r} gave no complete response to a probe")
    return final
