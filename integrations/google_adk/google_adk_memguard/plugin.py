"""`MemGuardPlugin`: the half of `MemGuardSummarizer` that sees the runs and their model requests.

A summarizer is handed events only; the plugin tells it which run they belong to and does the
in-flow review where the real request exists: in `before_model_callback` (it goes last in
`App(plugins=[...])`, so it sees the request every other plugin prepared) it probes the real
request and the same request rebuilt with the held proposal, appends the committed compaction
event where ADK would have, and returns the winning probe as the step's response. A served
response counts against `max_llm_calls` like the call it replaces and keeps the probe's
`usage_metadata` (ADK's next threshold check reads it). ADK ends a run on a plugin exception, so
every failure here is caught and published as a decision instead (the step then runs unguarded:
the full context, or the proposal under a hard limit).

In audit mode ADK applies every proposal itself; the plugin notes it, and when the real call's
response arrives (`after_model_callback`) hands the guard a review whose proposed action is that
observed response and whose full-context probe runs in the background, off the run's path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.adk.agents.callback_context import CallbackContext
from google.adk.agents.invocation_context import InvocationContext, LlmCallsLimitExceededError
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.plugins.base_plugin import BasePlugin
from memguard import CompactionEvent, Gate, Verdict

from google_adk_memguard.invocations import Held, Invocation, Invocations
from google_adk_memguard.rebuild import contents_with, frozen, scope_like
from google_adk_memguard.review import Candidates
from google_adk_memguard.views import response_view

if TYPE_CHECKING:
    from google_adk_memguard.summarizer import MemGuardSummarizer

__all__ = ["MemGuardPlugin"]

logger = logging.getLogger("memguard.google_adk")


@dataclass
class _AuditWatch:
    """An audit review waiting for the real call's response (the proposed action)."""

    event: CompactionEvent
    candidates: Candidates
    gate: Gate


def _context(callback_context: CallbackContext) -> InvocationContext:
    ctx: InvocationContext = callback_context._invocation_context
    return ctx


class MemGuardPlugin(BasePlugin):
    """The plugin of one `MemGuardSummarizer` (its `.plugin`); put it last in ``App(plugins=[...])``.

    A summarizer is handed events only; the plugin tells it which run they belong to, and does
    the in-flow review where the real request exists, in `before_model_callback`: last among the
    plugins, it sees the request every other plugin prepared. A served response counts against
    `max_llm_calls` like the call it replaces. ADK ends a run on a plugin exception, so every
    failure here is caught and published as a decision instead.

    Args:
        summarizer: The summarizer this plugin serves.
        name: The plugin's name in the app.
    """

    def __init__(self, summarizer: MemGuardSummarizer, name: str = "memguard") -> None:
        super().__init__(name=name)
        self.summarizer = summarizer
        """The summarizer this plugin serves."""
        self.invocations = Invocations()

    # ------------------------------------------------------------------ run bookkeeping

    async def before_run_callback(self, *, invocation_context: InvocationContext) -> None:
        """Register the run, so the summarizer knows which run its events belong to.

        See `google.adk.plugins.BasePlugin.before_run_callback`.
        """
        try:
            self.invocations.start(invocation_context)
        except Exception as exc:  # noqa: BLE001 - a plugin exception would end the run
            logger.error("memguard: could not register invocation (%s)", type(exc).__name__)
        return None

    async def before_agent_callback(self, *, agent: Any, callback_context: CallbackContext) -> None:
        """Note the agent now running in the run (its model is the one probed).

        See `google.adk.plugins.BasePlugin.before_agent_callback`.
        """
        invocation = self.invocations.get(callback_context.invocation_id)
        if invocation is not None:
            invocation.enter(_context(callback_context))
        return None

    async def after_run_callback(self, *, invocation_context: InvocationContext) -> None:
        """Mark the run finished: what the summarizer is asked from now on is post-invocation.

        See `google.adk.plugins.BasePlugin.after_run_callback`.
        """
        invocation = self.invocations.get(invocation_context.invocation_id)
        if invocation is not None:
            invocation.running = False  # what the summarizer is asked now is post-invocation
            if invocation.held is not None:
                logger.debug("memguard: a held %s was never reviewed (no model call followed)", invocation.held.kind)
            invocation.held = None
            invocation.watch = None
        return None

    # ------------------------------------------------------------------ the model call

    async def before_model_callback(self, *, callback_context: CallbackContext,
                                    llm_request: LlmRequest) -> LlmResponse | None:
        """Review a held proposal against the real request, and answer the step with the winning probe.

        Probes the real request and the same request rebuilt with the proposal, appends the
        committed compaction event where ADK would have, and returns the winning probe. A skip is
        published against the real request; in audit mode the review waits for the real call's
        response (`after_model_callback`).

        See `google.adk.plugins.BasePlugin.before_model_callback`.

        Returns:
            The winning probe as the step's response, or None: ADK calls the model on the request
            as it now is (nothing held, nothing to serve, or a failure, published as a decision).
        """
        invocation = self.invocations.get(callback_context.invocation_id)
        if invocation is None:
            return None
        ctx = _context(callback_context)
        invocation.enter(ctx)
        invocation.last_request = llm_request.model_copy(update={"contents": list(llm_request.contents)})
        invocation.watch = None
        held, invocation.held = invocation.held, None
        if held is None:
            return None
        summarizer = self.summarizer
        try:
            if held.kind == "skip":
                before = summarizer.view(llm_request, llm_request.contents, ctx.session.events)
                summarizer.record(await summarizer.guard.askip(held.gate, before, strategy=summarizer.strategy))
                return None
            if held.kind == "audit":
                await self._watch(invocation, ctx, llm_request, held)
                return None
            return await self._review(ctx, llm_request, held)
        except Exception as exc:  # noqa: BLE001 - a plugin exception would end the run: publish it instead
            committed = held.kind == "review" and held.gate.must_reduce and held.proposal is not None
            try:
                if committed and held.proposal is not None:
                    await self._commit(ctx, held.proposal)
                summarizer.record(await summarizer.failed(exc, held.gate, committed=committed or held.kind == "audit"))
            except Exception as again:  # noqa: BLE001 - the run goes on whatever the sinks say
                logger.error("memguard: publishing a failure failed (%s)", type(again).__name__)
            return None

    async def _review(self, ctx: InvocationContext, llm_request: LlmRequest, held: Held) -> LlmResponse | None:
        """Probe the real request and the proposal's, commit or not, serve the winner."""
        summarizer = self.summarizer
        proposal = held.proposal
        assert proposal is not None
        session_events = list(ctx.session.events)

        async def contents_for(compaction: Any) -> list[Any]:
            if compaction is None:
                return list(llm_request.contents)
            return await contents_with(ctx, llm_request, session_events, session_events + [scope_like(compaction, ctx)])

        candidates = await summarizer.candidates(ctx, llm_request, contents_for, session_events)
        full = await candidates.add(None)
        proposed = await candidates.add(proposal)
        event = summarizer.event(full.view, proposed.view, held.gate, ctx, "in_flow")
        summarizer.count("in_flow_reviews")
        decision = await summarizer.guard.areview(event, candidates.policy, gate=held.gate,
                                                  fallbacks=summarizer.bound_fallbacks(held.events, candidates))
        summarizer.record(decision)
        chosen = candidates.chosen(decision)
        if chosen is None and held.gate.must_reduce:
            chosen = proposed  # no veto under the hard limit, whatever the review said
        if chosen is None:
            response = candidates.served(decision, full) if decision.verdict is Verdict.VETO else None
        else:
            assert chosen.compaction is not None
            await self._commit(ctx, chosen.compaction)
            llm_request.contents[:] = chosen.contents  # a real call, if one follows, sees the committed context
            response = candidates.served(decision, chosen)
        if response is None:
            return None  # nothing to serve: ADK calls the model on the request as it now is
        try:
            ctx.increment_llm_call_count()  # the served response stands in for a counted call
        except LlmCallsLimitExceededError:
            return None  # ADK counts its own call next and stops the run with its own error
        summarizer.count("served")
        return response.model_copy()

    async def _commit(self, ctx: InvocationContext, compaction: Any) -> None:
        """Append the compaction event where ADK's compaction processor would have."""
        await ctx.session_service.append_event(session=ctx.session, event=scope_like(compaction, ctx))
        if hasattr(ctx, "token_compaction_checked"):
            ctx.token_compaction_checked = True

    # ------------------------------------------------------------------ audit mode

    async def _watch(self, invocation: Invocation, ctx: InvocationContext, llm_request: LlmRequest,
                     held: Held) -> None:
        """Note an applied proposal; its review starts when the real call's response arrives.

        Nothing here walks the session: the request without the proposal (ADK's contents
        processor) and both views are built on the guard's worker (`deferred_event`), from
        snapshots taken now: the request as this callback sees it (`last_request`, its own
        contents list: the model appends to the real one) and the session's events (`frozen`).
        """
        summarizer = self.summarizer
        proposal = held.proposal
        assert proposal is not None and invocation.last_request is not None
        request = invocation.last_request
        session_events = list(ctx.session.events)
        snapshot = frozen(ctx, session_events)

        async def contents_for(compaction: Any) -> list[Any]:
            if compaction is None:
                without = [event for event in session_events if event is not proposal]
                return await contents_with(snapshot, request, session_events, without)
            return list(request.contents)

        candidates = await summarizer.candidates(ctx, request, contents_for, ())
        invocation.watch = _AuditWatch(summarizer.deferred_event(candidates, session_events, proposal, held.gate,
                                                                 ctx, "in_flow"), candidates, held.gate)
        summarizer.count("in_flow_reviews")

    async def after_model_callback(self, *, callback_context: CallbackContext,
                                   llm_response: LlmResponse) -> LlmResponse | None:
        """Audit mode: hand the guard the review whose proposed action is this real response.

        The full-context probe runs in the background, off the run's path.

        See `google.adk.plugins.BasePlugin.after_model_callback`.

        Returns:
            Always None: the response is never changed.
        """
        invocation = self.invocations.get(callback_context.invocation_id)
        if invocation is None or invocation.watch is None or llm_response.partial:
            return None
        watch, invocation.watch = invocation.watch, None
        try:
            event = watch.event.model_copy(update={"proposed_response": response_view(llm_response)})
            self.summarizer.record(await self.summarizer.guard.areview(event, watch.candidates.policy,
                                                                       gate=watch.gate, fallbacks=()))
        except Exception as exc:  # noqa: BLE001 - a plugin exception would end the run
            logger.error("memguard: submitting an audit review failed (%s)", type(exc).__name__)
        return None

    async def on_model_error_callback(self, *, callback_context: CallbackContext, llm_request: LlmRequest,
                                      error: Exception) -> LlmResponse | None:
        """Drop a waiting audit review: the step got no response to judge.

        See `google.adk.plugins.BasePlugin.on_model_error_callback`.

        Returns:
            Always None: the error is left to ADK.
        """
        invocation = self.invocations.get(callback_context.invocation_id)
        if invocation is not None:
            invocation.watch = None  # the step got no response: there is nothing to judge
        return None
