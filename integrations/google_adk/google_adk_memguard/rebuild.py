"""The request ADK would send with a compaction applied (or not), built by ADK's own contents builder.

A compaction is an event appended to the session; ADK turns the session's events into a request's
contents in its contents request processor (compaction ranges folded into their summaries, tool
calls re-paired, other agents' turns fenced, ids stripped or kept for the model at hand). This
module runs that very processor on a scratch request over another list of events (the session's,
plus or minus the proposal), with everything else the processor reads from the invocation: so a
candidate request is the one ADK would build, not an imitation of it.

A real request is more than the processor's output: processors before it leave instruction
contents that it inserts at the current-turn boundary, and processors after it may append
(code execution) or rewrite. `contents_with` recovers those extras from the real request, puts
them back through the processor and checks the result rebuilds the real request exactly; where
it does not, it splices the changed head of the history under the real request's own tail, and
where neither holds it says so (`CandidateUnavailable`) rather than guess.
"""

from __future__ import annotations

import copy
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from google.adk.agents.invocation_context import InvocationContext
from google.adk.events.event import Event
from google.adk.flows.llm_flows import contents as adk_contents
from google.adk.models.llm_request import LlmRequest
from google.genai import types

__all__ = ["CandidateUnavailable", "build_contents", "contents_with", "frozen", "probe_request", "run_detached",
           "scope_like"]

T = TypeVar("T")


class CandidateUnavailable(RuntimeError):
    """The real request cannot be rebuilt over other events (a processor changed it beyond recognition).

    Raised by `contents_with` rather than guess at the compacted request. In-flow, the plugin
    publishes the failed review as a decision, and the step runs unguarded.
    """


def scope_like(event: Event, ctx: InvocationContext) -> Event:
    """`event` in the invocation's isolation scope, as ADK sets a compaction's before appending it."""
    if "isolation_scope" in type(event).model_fields and hasattr(ctx, "isolation_scope"):
        event.isolation_scope = ctx.isolation_scope
    return event


def frozen(ctx: InvocationContext, events: list[Event]) -> InvocationContext:
    """`ctx` over a snapshot of its session's events, for building requests later on another thread.

    A shallow copy (O(1) but for the list of event references, no per-event work): ADK appends
    session events and does not edit them once appended, but it may remove one (a single-turn
    agent's injected input) and the run goes on appending, so the list is copied while the events
    are shared. The context's own fields (agent, branch, run config, scope) are the values the
    request was built with.

    Args:
        ctx: The invocation context of the agent whose request is built.
        events: The session events as they are now: a copy the caller made (it is not copied again).

    Returns:
        A copy of `ctx` whose session holds `events`.
    """
    return ctx.model_copy(update={"session": ctx.session.model_copy(update={"events": events})})


def run_detached(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end here, without an event loop: for ADK's request building off the run's loop.

    ADK's contents processor is an async generator that only computes (no I/O, nothing bound to
    the run's loop), so the guard's worker thread can drive it directly. A coroutine that does
    wait on something (a future of some loop) is closed and refused rather than run on a loop it
    does not belong to.

    Args:
        coroutine: A coroutine that never waits on a future (a bare ``await asyncio.sleep(0)`` is fine).

    Returns:
        Its result.

    Raises:
        RuntimeError: It waited on a future.
    """
    try:
        while True:
            waited = coroutine.send(None)
            if waited is not None:
                raise RuntimeError("ADK's request building waited on I/O; it cannot run off the run's event loop")
    except StopIteration as done:
        result: T = done.value
        return result
    finally:
        coroutine.close()


async def build_contents(
    ctx: InvocationContext, events: Sequence[Event], template: LlmRequest | None = None,
    initial: Sequence[types.Content] = (),
) -> list[types.Content]:
    """The contents ADK's contents processor builds over `events` for this invocation.

    Args:
        ctx: The invocation context of the agent whose request is built (branch, agent, scope).
        events: The session events to build from (the real session is not touched).
        template: The request being built, for the fields the processor reads (a previous
            interaction id, static-instruction bookkeeping); None for a fresh request.
        initial: Contents already in the request when the processor runs (instruction contents,
            which it inserts at the current-turn boundary).

    Returns:
        The request contents, as a new list.
    """
    scratch = _scratch(template, initial)
    session = ctx.session.model_copy(update={"events": list(events)})
    view_ctx = ctx.model_copy(update={"session": session})
    async for _ in adk_contents.request_processor.run_async(view_ctx, scratch):
        pass
    return list(scratch.contents)


def _scratch(template: LlmRequest | None, initial: Sequence[types.Content]) -> LlmRequest:
    if template is None:
        return LlmRequest(contents=list(initial))
    scratch = template.model_copy(update={"contents": list(initial)})
    if getattr(scratch, "_static_instruction_prefix_end_index", None) is not None:
        scratch._static_instruction_prefix_end_index = None  # as before the processor placed the prefix
    return scratch


async def contents_with(
    ctx: InvocationContext, request: LlmRequest, events: Sequence[Event], other_events: Sequence[Event]
) -> list[types.Content]:
    """`request`'s contents as ADK would have built them over `other_events` instead of `events`.

    Args:
        ctx: The invocation context `request` was built in.
        request: The real request, built over `events`.
        events: The events the real request was built from (the session's, now).
        other_events: The same events with a compaction added (or removed).

    Returns:
        The contents of the other request, as a new list.

    Raises:
        CandidateUnavailable: The real request is not the processor's output plus recognisable extras.
    """
    real = list(request.contents)
    plain = await build_contents(ctx, events, request)
    other_plain = await build_contents(ctx, other_events, request)
    if plain == real:
        return other_plain
    extras = _extras(real, plain)
    if extras is not None and await build_contents(ctx, events, request, extras) == real:
        return await build_contents(ctx, other_events, request, extras)
    return _splice(real, plain, other_plain)


def _extras(real: list[types.Content], plain: list[types.Content]) -> list[types.Content] | None:
    """The contents of `real` that `plain` lacks, in order (None: `plain` is not a subsequence of `real`)."""
    extras: list[types.Content] = []
    position = 0
    for content in real:
        if position < len(plain) and content == plain[position]:
            position += 1
        else:
            extras.append(content)
    return extras if position == len(plain) else None


def _splice(real: list[types.Content], plain: list[types.Content], other: list[types.Content]) -> list[types.Content]:
    """`other`'s changed head under `real`'s tail: where a compaction changes only older history."""
    shared = 0
    while shared < min(len(plain), len(other)) and plain[len(plain) - 1 - shared] == other[len(other) - 1 - shared]:
        shared += 1
    head, other_head = plain[: len(plain) - shared], other[: len(other) - shared]
    if real[: len(head)] != head:
        raise CandidateUnavailable(
            "the model request differs from what ADK's contents processor builds in the history a compaction "
            "changes; a request processor or callback rewrote it, so the compacted request cannot be rebuilt"
        )
    return other_head + real[len(head):]


def probe_request(request: LlmRequest, contents: Sequence[types.Content], agent_name: str | None = None) -> LlmRequest:
    """A copy of `request` with `contents`, ready to send: its own contents list and config.

    Models append turns to the request they are given and ADK adds its billing label when it calls
    the model, so each probe gets deep copies of the contents and its own config (labelled like
    the call it stands in for), while tools and other settings stay the request's own.

    Args:
        request: The request to copy (the step's real request).
        contents: The contents to send.
        agent_name: The agent whose call the probe stands in for (the billing label), if known.

    Returns:
        The probe's request.
    """
    config = request.config.model_copy() if request.config is not None else types.GenerateContentConfig()
    labels: dict[str, Any] = dict(config.labels or {})
    if agent_name and _LABEL not in labels:
        labels[_LABEL] = agent_name
    config.labels = labels or None
    return request.model_copy(update={"contents": [copy.deepcopy(content) for content in contents], "config": config})


_LABEL = "adk_agent_name"
"""The label ADK puts on every model call's config (billing by agent); a probe carries it too."""
