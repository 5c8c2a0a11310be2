"""`MemGuardSummarizer`: an ADK events summarizer whose proposals MemRM reviews before they count.

ADK compacts a session through `EventsCompactionConfig.summarizer` in two places:

- **in-flow**, before a model call, once the agent's last prompt passed `token_threshold`: the
  summarizer asks the guard's gate, runs the inner summarizer and *holds* its proposal (returns
  None, so ADK builds the real, full request); the plugin then probes the real request and the
  same request rebuilt with the proposal, commits the proposal (appending it where ADK would
  have) or not, and serves the winning probe as the step's response: one extra model call;
- **post-invocation**, after a run: the summarizer probes the next request (the last one the run
  sent, rebuilt over the session now, `probe_message` appended) without and with the proposal
  and returns the proposal or None: two extra model calls, as nothing is pending to reuse.

During a cooldown the inner summarizer is not called at all. Raw events stay in the session, so a
veto loses nothing: ADK proposes again at its next trigger, and the gate decides whether that is
reviewed. Its `plugin` must be in the app (`guard_app` does both).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from google.adk.agents.invocation_context import InvocationContext
from google.adk.apps.base_events_summarizer import BaseEventsSummarizer
from google.adk.apps.llm_event_summarizer import LlmEventSummarizer
from google.adk.events.event import Event
from google.adk.models.base_llm import BaseLlm
from google.genai import types
from memguard import CompactionEvent, Decision, Gate, Guard, Message, Verdict

from google_adk_memguard.fallbacks import SummarizerStrategy, check_fallbacks, strategy_name
from google_adk_memguard.invocations import Invocation, model_steps
from google_adk_memguard.probing import agent_model, streaming
from google_adk_memguard.rebuild import build_contents, frozen, run_detached, scope_like
from google_adk_memguard.review import Candidates, summary_of
from google_adk_memguard.views import ContentBridge

__all__ = ["MemGuardSummarizer"]

logger = logging.getLogger("memguard.google_adk")


class MemGuardSummarizer(BaseEventsSummarizer):
    """Guard an ADK events summarizer with MemRM.

    ADK compacts a session through `EventsCompactionConfig.summarizer` in two places, and both are
    reviewed. In-flow, before a model call: the proposal is held, the plugin probes the real
    request and the same request rebuilt with the proposal, commits the proposal (appending it
    where ADK would have) or not, and serves the winning probe as the step's response (one extra
    model call). Post-invocation, after a run: the next request is probed without and with the
    proposal (two extra model calls). During a cooldown the inner summarizer is not called. Raw
    events stay in the session, so a veto loses nothing: ADK proposes again at its next trigger.
    Its `plugin` must go last in ``App(plugins=[...])``; `guard_app` wires both.

    Args:
        inner: The summarizer to guard; None builds ADK's default `LlmEventSummarizer` over the
            agent's model on first use (as ADK itself does).
        guard: The memguard `Guard` that decides.
        fallbacks: Other events summarizers tried, in order, when the proposal is judged harmful
            (their events are committed the same way). The guard's own view-level fallbacks are
            not used: an ADK session is compacted only by compaction events.
        on_decision: Called with every decision (in audit mode with the pending record; the
            scored one reaches the guard's sinks).
        model: The model to probe; default: the agent's own, as the flow resolves it.
        hard_token_limit: When ADK's own prompt-token figure for the session reaches this, no veto
            is allowed: the lowest-risk candidate is committed (verdict ``forced``).
        probe_message: A user turn appended to post-invocation probes, standing in for the user's
            next message (default: none; the probes continue from the run's last turn).

    Raises:
        TypeError: `guard` is not a `Guard`, `inner` or a fallback not a `BaseEventsSummarizer`.
        ValueError: `hard_token_limit` is not a positive number.
    """

    def __init__(
        self,
        inner: BaseEventsSummarizer | None,
        guard: Guard,
        *,
        fallbacks: Sequence[BaseEventsSummarizer] = (),
        on_decision: Callable[[Decision], Any] | None = None,
        model: BaseLlm | None = None,
        hard_token_limit: int | None = None,
        probe_message: str | types.Content | None = None,
    ) -> None:
        from google_adk_memguard.plugin import MemGuardPlugin

        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a memguard.Guard, got {type(guard).__name__}")
        if inner is not None and not isinstance(inner, BaseEventsSummarizer):
            raise TypeError(f"inner must be a BaseEventsSummarizer or None, got {type(inner).__name__}")
        if isinstance(inner, MemGuardSummarizer):
            raise TypeError("inner is already a MemGuardSummarizer")
        if hard_token_limit is not None and (isinstance(hard_token_limit, bool) or not isinstance(hard_token_limit, int)
                                             or hard_token_limit <= 0):
            raise ValueError(f"hard_token_limit must be a positive token count, got {hard_token_limit!r}")
        if on_decision is not None and not callable(on_decision):
            raise TypeError("on_decision must be callable")
        if model is not None and not isinstance(model, BaseLlm):
            raise TypeError(f"model must be a google.adk BaseLlm, got {type(model).__name__}")
        self.inner = inner
        """The guarded summarizer (ADK's default once built, when None was given)."""
        self.guard = guard
        """The guard that decides."""
        self.fallbacks = check_fallbacks(fallbacks)
        """The fallback summarizers, tried in order."""
        self.on_decision = on_decision
        self.model = model
        self.hard_token_limit = hard_token_limit
        self.probe_message = _as_content(probe_message)
        self.last_decision: Decision | None = None
        """The latest decision (None before the first)."""
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.plugin = MemGuardPlugin(self)
        """This summarizer's plugin: put it last in ``App(plugins=[...])``."""

    def stats(self) -> dict[str, int]:
        """What this summarizer did: reviews by path, served responses, skipped steps, failures.

        Returns:
            Counts by name: ``in_flow_reviews`` cost one extra model call each (the winning probe
            is ``served`` as the step's response), ``post_invocation_reviews`` two; ``skipped``
            steps cost nothing (the inner summarizer was not called); ``failures`` were published
            as decisions.
        """
        with self._lock:
            return {name: self._counts[name] for name in
                    ("in_flow_reviews", "post_invocation_reviews", "served", "skipped", "failures")}

    def count(self, name: str) -> None:
        """Count one more of `name` in `stats` (the plugin counts its own reviews here).

        Args:
            name: One of the names `stats` reports.
        """
        with self._lock:
            self._counts[name] += 1

    def __repr__(self) -> str:
        return f"MemGuardSummarizer({self.inner!r}, mode={self.guard.mode!r})"

    @property
    def strategy(self) -> str:
        """The proposal's name in records and in MemRM's prompt."""
        return strategy_name(self.inner) if self.inner is not None else "llm_event_summarizer"

    # ------------------------------------------------------------------ ADK's hook

    async def maybe_summarize_events(self, *, events: list[Event]) -> Event | None:
        """Review the inner summarizer's proposal for `events`.

        In-flow (the run is going on), the proposal is held for the plugin, which reviews it
        against the real request; in audit mode it is returned, for ADK to apply as it would
        unguarded. Post-invocation, it is reviewed here. During a cooldown the inner summarizer
        is not called; a failing inner summarizer is published as a decision and proposes nothing.

        See `google.adk.apps.base_events_summarizer.BaseEventsSummarizer.maybe_summarize_events`.

        Returns:
            The compaction event to append (post-invocation, committed), or None: nothing to
            append now (vetoed, skipped, failed, or in-flow: held for the plugin).
        """
        invocation = self.plugin.invocations.find(events)
        if invocation is None or invocation.ctx is None:
            logger.error("memguard: MemGuardSummarizer ran without its plugin; add summarizer.plugin last to "
                         "App(plugins=[...]) or build the app with guard_app(). Nothing was compacted.")
            return None
        if invocation.running:
            return await self._in_flow(invocation, events)
        return await self._post_invocation(invocation, events)

    # ------------------------------------------------------------------ in-flow

    async def _in_flow(self, invocation: Invocation, events: list[Event]) -> Event | None:
        from google_adk_memguard.invocations import Held

        ctx = invocation.ctx
        assert ctx is not None
        gate = self._gate(ctx, in_flow=True)
        if not gate.review:
            invocation.held = Held("skip", gate)  # published by the plugin against the real request
            self.count("skipped")
            return None
        proposal = await self._propose(ctx, events, gate)
        if proposal is None:
            return None
        if gate.audit:
            invocation.held = Held("audit", gate, proposal)  # no fallbacks in audit: the events are not needed
            return proposal  # audit: ADK applies the proposal as it would unguarded
        invocation.held = Held("review", gate, proposal, list(events))
        return None

    # ------------------------------------------------------------------ post-invocation

    async def _post_invocation(self, invocation: Invocation, events: list[Event]) -> Event | None:
        ctx = invocation.ctx
        assert ctx is not None
        gate = self._gate(ctx, in_flow=False)
        template = invocation.last_request
        session_events = list(ctx.session.events)
        if not gate.review:
            self.count("skipped")
            before = await self._post_view(ctx, session_events, template)
            self.record(await self.guard.askip(gate, before, strategy=self.strategy))
            return None
        proposal = await self._propose(ctx, events, gate)
        if proposal is None:
            return None
        if template is None:
            self.record(await self.failed(RuntimeError("no model request seen in this invocation"), gate,
                                          committed=gate.audit))
            return proposal if gate.audit else None
        extra = [self.probe_message] if self.probe_message is not None else []
        if gate.audit:
            # Both requests are built on the guard's worker, over a snapshot of the session (see
            # `frozen`): the run's path does no per-event work. The proposal is scoped here, as
            # ADK scopes it, so the worker never writes to an event the session holds.
            scoped = scope_like(proposal, ctx)
            snapshot = frozen(ctx, session_events)

            async def audit_contents(compaction: Event | None) -> list[types.Content]:
                added = [] if compaction is None else [scoped]
                return await build_contents(snapshot, session_events + added, template) + extra

            candidates = await self.candidates(ctx, template, audit_contents, ())
            self.count("post_invocation_reviews")
            event = self.deferred_event(candidates, session_events, proposal, gate, ctx, "post_invocation")
            self.record(await self.guard.areview(event, candidates.policy, gate=gate, fallbacks=()))
            return proposal

        async def contents_for(compaction: Event | None) -> list[types.Content]:
            added = [] if compaction is None else [scope_like(compaction, ctx)]
            return await build_contents(ctx, session_events + added, template) + extra

        candidates = await self.candidates(ctx, template, contents_for, session_events)
        full = await candidates.add(None)
        proposed = await candidates.add(proposal)
        event = self.event(full.view, proposed.view, gate, ctx, "post_invocation")
        self.count("post_invocation_reviews")
        decision = await self.guard.areview(event, candidates.policy, gate=gate,
                                            fallbacks=self.bound_fallbacks(events, candidates))
        self.record(decision)
        chosen = candidates.chosen(decision)
        if chosen is None and gate.must_reduce:
            chosen = proposed  # no veto under the hard limit, whatever the review said
        return None if chosen is None else chosen.compaction

    async def _post_view(self, ctx: InvocationContext, events: list[Event], template: Any) -> list[Message]:
        return self.view(template, await build_contents(ctx, events, template), events)

    def view(self, template: Any, contents: Sequence[types.Content], events: Sequence[Event]) -> list[Message]:
        """memguard's view of request contents: `template`'s system instruction first, summaries marked.

        Args:
            template: The request the contents belong to (its system instruction leads the view).
            contents: The request contents.
            events: The session events, whose compaction summaries are shown as ``[Summary]`` turns.

        Returns:
            The view (see `ContentBridge.to_view`).
        """
        config = getattr(template, "config", None)
        return ContentBridge(getattr(config, "system_instruction", None), _summaries(events)).to_view(contents)

    # ------------------------------------------------------------------ shared with the plugin

    def _gate(self, ctx: InvocationContext, *, in_flow: bool) -> Gate:
        events = ctx.session.events
        must_reduce = False
        if self.hard_token_limit is not None:
            tokens = _prompt_tokens(events, ctx, in_flow=in_flow)
            must_reduce = tokens is not None and tokens >= self.hard_token_limit
        return self.guard.gate(None, conversation_id=ctx.session.id, step=model_steps(events), must_reduce=must_reduce)

    async def _propose(self, ctx: InvocationContext, events: list[Event], gate: Gate) -> Event | None:
        """The inner summarizer's proposal; a failure is published and proposes nothing."""
        try:
            inner = self.inner if self.inner is not None else self._default_inner(ctx)
            return await inner.maybe_summarize_events(events=events)
        except Exception as exc:  # noqa: BLE001 - ADK would swallow it as "no compaction": so do we, on record
            self.count("failures")
            decision = self.guard.compaction_failed([], strategy=self.strategy, error=exc,
                                                    conversation_id=gate.conversation_id)
            await self.guard.apublish(decision)
            self.record(decision)
            return None

    def _default_inner(self, ctx: InvocationContext) -> BaseEventsSummarizer:
        agent: Any = ctx.agent
        if not hasattr(agent, "canonical_model"):
            raise TypeError(f"no summarizer given and agent {type(agent).__name__} has no model to summarize with")
        self.inner = LlmEventSummarizer(llm=agent.canonical_model)
        return self.inner

    async def probe_model(self, ctx: InvocationContext) -> BaseLlm:
        """The model to probe: `model` when given, else the agent's own, as the flow resolves it.

        Args:
            ctx: The invocation's context.

        Returns:
            The model.

        Raises:
            TypeError: The agent has no model (not an LLM agent).
        """
        return self.model if self.model is not None else await agent_model(ctx)

    async def candidates(self, ctx: InvocationContext, template: Any, contents_for: Any,
                         events: Sequence[Event]) -> Candidates:
        """The review's candidate set, probing this invocation's agent model as the run calls it.

        Args:
            ctx: The invocation's context.
            template: The request every probe copies (model, config, tools).
            contents_for: Builds the request contents with a compaction event applied (None: without).
            events: The session events (their summaries are shown as such); none for a deferred
                event, whose build adds them (`deferred_event`).

        Returns:
            An empty `Candidates`, streamed when the run streams.
        """
        bridge = ContentBridge(getattr(template.config, "system_instruction", None), _summaries(events))
        return Candidates(template, contents_for, bridge, await self.probe_model(ctx), stream=streaming(ctx),
                          agent_name=getattr(ctx.agent, "name", None))

    def bound_fallbacks(self, events: Sequence[Event], candidates: Candidates) -> tuple[SummarizerStrategy, ...]:
        """The fallbacks bound to one review's events and candidates, each under a name of its own.

        Args:
            events: The events the proposal summarized (each fallback summarizes the same ones).
            candidates: The review's candidate set.

        Returns:
            One `SummarizerStrategy` per fallback, named as in `fallback_names`.
        """
        return tuple(SummarizerStrategy(fallback, list(events), candidates, name)
                     for fallback, name in zip(self.fallbacks, self.fallback_names, strict=True))

    @property
    def fallback_names(self) -> list[str]:
        """Fallback names in records: the summarizer's kind, numbered where two share one (``..._2``)."""
        seen = [self.strategy]
        names = []
        for fallback in self.fallbacks:
            base = strategy_name(fallback)
            name, n = base, 1
            while name in seen:
                n += 1
                name = f"{base}_{n}"
            seen.append(name)
            names.append(name)
        return names

    def event(self, before: list[Message], candidate: list[Message], gate: Gate, ctx: InvocationContext,
              path: str) -> CompactionEvent:
        """The `CompactionEvent` for one review: the conversation is the session, the step its model turns.

        Args:
            before: The view of the full request.
            candidate: The view of the request with the proposal applied.
            gate: The gate's answer for this step.
            ctx: The invocation's context.
            path: ``"in_flow"`` or ``"post_invocation"`` (recorded in the metadata).

        Returns:
            The event to review.
        """
        return CompactionEvent(before=before, candidate=candidate, **self._event_fields(gate, ctx, path))

    def deferred_event(self, candidates: Candidates, events: Sequence[Event], proposal: Event, gate: Gate,
                       ctx: InvocationContext, path: str) -> CompactionEvent:
        """An audit review's event whose views the guard's worker builds, off the run's path.

        Building the full and the proposed request (ADK's contents processor) and showing them to
        memguard walk the whole session; an audit review hands both to the worker
        (`CompactionEvent.deferred`), which then probes through `candidates` as usual.

        Args:
            candidates: The review's candidates, empty: their `contents_for` must read only
                snapshots (`frozen`), as it runs on another thread, later.
            events: A snapshot of the session events (their summaries are shown as such).
            proposal: The compaction event proposed.
            gate: The gate's answer for this step.
            ctx: The invocation's context (its ids are read now).
            path: ``"in_flow"`` or ``"post_invocation"``.

        Returns:
            The deferred event to review.
        """
        def build() -> tuple[list[Message], list[Message]]:
            candidates.bridge.summaries.extend(_summaries(events))
            full = run_detached(candidates.add(None))
            proposed = run_detached(candidates.add(proposal))
            return full.view, proposed.view

        return CompactionEvent.deferred(build, **self._event_fields(gate, ctx, path))

    def _event_fields(self, gate: Gate, ctx: InvocationContext, path: str) -> dict[str, Any]:
        return {"strategy": self.strategy, "step": gate.step, "conversation_id": gate.conversation_id,
                "metadata": {"framework": "google_adk", "path": path, "invocation_id": ctx.invocation_id,
                             "summarizer": type(self.inner).__name__, "app": ctx.session.app_name}}

    async def failed(self, error: BaseException, gate: Gate, *, committed: bool) -> Decision:
        """Publish the decision for a review that could not run: what happened to the proposal, and why.

        Args:
            error: What failed (only its type is recorded: a message may quote the conversation).
            gate: The gate's answer for this step.
            committed: Whether the proposal was applied anyway (audit mode, or a hard limit).

        Returns:
            The published decision: verdict ``forced`` when the proposal was applied, else ``veto``.
        """
        self.count("failures")
        logger.warning("memguard: reviewing a %s proposal failed (%s); %s", self.strategy, type(error).__name__,
                       "it was applied" if committed else "nothing was compacted")
        decision = Decision(
            verdict=Verdict.FORCED if committed else Verdict.VETO,
            mode="audit" if gate.audit else "enforce", proposed_strategy=self.strategy,
            strategy=self.strategy if committed else None,
            reasons=[f"the review failed ({type(error).__name__}); "
                     + ("the proposal was applied" if committed else "nothing was compacted")],
            error=f"google_adk_memguard failed: {type(error).__name__}", reviewed=False, step=gate.step or 0,
            conversation_id=gate.conversation_id, scorer=self.guard.identity,
        )
        await self.guard.apublish(decision)
        return decision

    def record(self, decision: Decision) -> None:
        """Keep `decision` as `last_decision` and hand it to `on_decision`.

        A coroutine `on_decision` is scheduled, not awaited; a failing hook is logged, never raised.

        Args:
            decision: The decision to record.
        """
        self.last_decision = decision
        if self.on_decision is None:
            return
        try:
            result = self.on_decision(decision)
            if inspect.isawaitable(result):
                asyncio.ensure_future(result)
        except Exception as exc:  # noqa: BLE001 - a user hook must not break the agent
            logger.error("memguard: on_decision hook failed (%s)", type(exc).__name__)


def _summaries(events: Sequence[Event]) -> list[types.Content]:
    return [summary for summary in (summary_of(event) for event in events) if summary is not None]


def _as_content(message: str | types.Content | None) -> types.Content | None:
    if message is None or isinstance(message, types.Content):
        return message
    if not isinstance(message, str):
        raise TypeError(f"probe_message must be a str or a google.genai Content, got {type(message).__name__}")
    return types.Content(role="user", parts=[types.Part(text=message)])


def _prompt_tokens(events: Sequence[Event], ctx: InvocationContext, *, in_flow: bool) -> int | None:
    """ADK's own prompt-token figure for this session (the one its token threshold reads)."""
    from google.adk.apps import compaction as adk_compaction

    latest = adk_compaction._latest_prompt_token_count
    options: dict[str, Any] = {}
    if in_flow:
        options = {"current_branch": ctx.branch, "agent_name": getattr(ctx.agent, "name", "")}
        if "isolation_scope" in inspect.signature(latest).parameters:
            options["isolation_scope"] = getattr(ctx, "isolation_scope", None)
    result = latest(list(events), **options)
    return result if isinstance(result, int) else None
