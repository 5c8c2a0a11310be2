"""The guard: review a proposed compaction, probe the agent, score, decide, fall back, audit.

`Guard` holds the configuration (one frozen `GuardSettings`), the per-conversation cooldown
state (asked through `Guard.gate` before any work is done for a step), the health counters, the
audit worker and the sinks, and performs every call. The decision itself is
`memguard.review.Review`, a sans-IO generator that never calls back into the guard: `review`
answers its requests with blocking calls, `areview` with awaits that keep blocking work (sync
strategies, token counting, sink writes, sync agents and scorers) off the event loop.

Scorer calls take one bounded path from both drivers: `scorer.score` on a daemon thread, waited
on for at most `timeout` seconds. A call that times out keeps its thread (counted in
`stats()["stalled_scorer_calls"]`; past `max_stalled_calls` new calls fail fast), and a daemon
thread never holds up `asyncio.run`'s exit or the interpreter's, as a default-executor thread
(`asyncio.to_thread`, what an `ascore` usually awaits) would.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from memguard._concurrency import (
    DaemonPool,
    Handoff,
    await_on_loop,
    call_async,
    call_blocking,
    in_running_loop,
    start_daemon,
)
from memguard.audit import AuditWorker, Sink, emit_all
from memguard.audit_jobs import AuditJob, dropped_decision, pending_decision
from memguard.events import CompactionEvent, Decision, Verdict
from memguard.gate import Cooldowns, Gate, assistant_turns, conversation_key
from memguard.messages import Message
from memguard.protocol import render_turns
from memguard.review import (
    Failure,
    ProbeRequest,
    Review,
    ScorerBacklog,
    ScoreRequest,
    Steps,
    StrategyRequest,
    TokenCountRequest,
    needs_agent,
    step_of,
)
from memguard.scoring.base import Score, Scorer, ScorerIdentity
from memguard.settings import GuardSettings, band_label
from memguard.stats import GuardStats
from memguard.strategies import Strategy, as_strategy

__all__ = ["Gate", "Guard", "Policy", "band_of", "conversation_key", "guarded"]

logger = logging.getLogger("memguard")

SCORER_THREADS = min(32, (os.cpu_count() or 1) + 4)
"""Threads a guard runs async reviews' scorer calls, token counts and sink writes on (asyncio's default)."""

Policy = Callable[[list[Any]], Any]
"""The agent: maps a message list (the caller's type) to its next response (sync or async)."""


def band_of(p_harmful: float, band: float | None, threshold: float = 0.5) -> str:
    """The coverage band of one score, by the published rule.

    A score is covered iff P(SAFE) ≥ t ("safe") or P(SAFE) ≤ 1 − t ("harmful"); in between it
    is "uncertain". Without a band, the commit rule labels it instead.

    Args:
        p_harmful: MemRM's P(HARMFUL).
        band: The coverage band t (0.88 is the published operating point); None labels by
            `threshold` alone.
        threshold: The commit threshold, used only when `band` is None.

    Returns:
        "safe", "uncertain" or "harmful".
    """
    return band_label(p_harmful, band, threshold)


class Guard:
    """Decide, for each proposed compaction, whether to commit it, fall back, or veto.

    The one commit rule: a candidate is committed iff P(HARMFUL) < `threshold`. Otherwise the
    guard tries `fallbacks` in order, and failing those vetoes: the agent keeps its full context
    and nothing is lost. The coverage band is reported on every candidate; with `band_gate=True`
    an uncertain score is not committed either. With `hard_budget` (tokens) the context must
    shrink, so instead of a veto the lowest-risk candidate that fits is committed.

    Close the guard when done (`close()`, `await aclose()`, `with` or `async with`): audit work
    still queued is written, then the sinks are closed. A guard dropped without closing leaves
    no thread behind.

    Args:
        scorer: What scores the MemRM prompts: `MemRM`, `RemoteMemRM`, a `ScoringWorker`, or
            any object with ``score(list[str]) -> list[Score]``.
        settings: The policy as one `GuardSettings`; None uses the defaults.
        sinks: Where every decision is written (`JSONLSink`, `LoggingSink`,
            `OpenTelemetrySink`, ...). A sink with ``attach(stats)`` is given the guard's
            `stats`.
        on_decision: Called with every decision published; an exception it raises is logged,
            never passed to the agent.
        token_counter: Counts a context's tokens for the hard budget; None uses the scorer's
            tokenizer, or about 4 characters per token when it has none.
        **options: Any `GuardSettings` field (`threshold`, `mode`, `fallbacks`, `cooldown`,
            ...), overriding what `settings` set.

    Raises:
        TypeError: `scorer` has no callable `score`.
        pydantic.ValidationError: An option is unknown or out of range (a `ValueError`).
    """

    def __init__(
        self,
        scorer: Scorer,
        *,
        settings: GuardSettings | None = None,
        sinks: Sequence[Sink] = (),
        on_decision: Callable[[Decision], Any] | None = None,
        token_counter: Callable[[list[Message]], int] | None = None,
        **options: Any,
    ) -> None:
        if not callable(getattr(scorer, "score", None)):
            raise TypeError("scorer must have score(list[str]) -> list[Score] (MemRM, RemoteMemRM, ...)")
        base = settings if settings is not None else GuardSettings()
        if options:  # keywords override what `settings` set explicitly; the rest keep their defaults
            explicit = {name: getattr(base, name) for name in base.model_fields_set}
            base = GuardSettings.model_validate({**explicit, **options})
        self.settings = base
        """The policy in force (frozen); the read-only properties mirror its fields."""
        self.scorer = scorer
        """What scores the MemRM prompts."""
        self.sinks: list[Sink] = list(sinks)
        """Where every decision is written, in order."""
        self.on_decision = on_decision
        """Called with every decision published (None: no callback)."""
        self._token_counter = token_counter
        self._stats = GuardStats(self.settings.on_error)
        self._cooldowns = Cooldowns(self.settings.max_conversations)
        self._lock = threading.Lock()
        self._closed = False
        self._closing: concurrent.futures.Future[None] | None = None
        self._worker: AuditWorker | None = None  # started with the first audit review
        self._warned: set[str] = set()
        # Async reviews run scorer calls, and apart from them token counts and sink writes, on a
        # few daemon threads each (as many as asyncio's default executor, whose threads
        # `asyncio.run` and the interpreter wait for on exit, hung or not).
        self._score_pool = DaemonPool(SCORER_THREADS, name="memguard-score")
        self._io_pool = DaemonPool(SCORER_THREADS, name="memguard-io")
        for sink in self.sinks:
            attach = getattr(sink, "attach", None)
            if callable(attach):
                attach(self.stats)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str], *, scorer: Scorer | None = None, **overrides: Any) -> Guard:
        """A guard as a TOML file describes it (its ``[guard]``, ``[scorer]`` and ``[audit]`` tables).

        Args:
            path: The TOML file.
            scorer: Use this scorer instead of building the file's ``[scorer]``.
            **overrides: `Guard` keywords that take precedence over the file.

        Returns:
            The new guard.

        Raises:
            memguard.config.ConfigError: The file is missing, unreadable, not TOML, or has an
                unknown or invalid key (the message names the file and the key).
            memguard.config.ScorerUnavailable: The file's scorer cannot be built here (a
                missing extra).
        """
        from memguard.config import build_guard, load_config

        return build_guard(load_config(path), scorer=scorer, **overrides)

    # ------------------------------------------------------------------ settings, read-only

    @property
    def mode(self) -> str:
        """How decisions act: "enforce" applies them, "audit" only records them (the agent's own
        compaction is used).
        """
        return self.settings.mode

    @property
    def threshold(self) -> float:
        """The commit threshold: a candidate is committed iff P(HARMFUL) < threshold."""
        return self.settings.threshold

    @property
    def band(self) -> float | None:
        """The coverage band t reported on every candidate (None: not reported)."""
        return self.settings.band

    @property
    def band_gate(self) -> bool:
        """Whether a score inside the coverage band (uncertain) also blocks a commit."""
        return self.settings.band_gate

    @property
    def uncertain(self) -> str:
        """The 0.1.0 name for `band_gate`: "harmful" when it is on, else "safe" (read-only)."""
        return self.settings.uncertain

    @property
    def fallbacks(self) -> tuple[Strategy, ...]:
        """The safer strategies tried, in order, when a proposal is not acceptable."""
        return self.settings.fallbacks

    @property
    def search(self) -> str:
        """How fallbacks are tried: one at a time ("sequential", fewest agent calls) or all at once
        ("parallel", lowest latency); both pick the same winner.
        """
        return self.settings.search

    @property
    def hard_budget(self) -> int | None:
        """Tokens the context must fit in (None: no budget).

        When no candidate is safe, the lowest-risk one that fits is committed (verdict "forced")
        instead of a veto.
        """
        return self.settings.hard_budget

    @property
    def on_error(self) -> str:
        """What a failed review does: "open" commits the compaction, "closed" keeps the full context.

        A review fails when the scorer or the agent raises, a score is NaN, or a call times out.
        """
        return self.settings.on_error

    @property
    def timeout(self) -> float | None:
        """Seconds each probe, fallback and scorer call may take (None: no limit)."""
        return self.settings.timeout

    @property
    def cooldown(self) -> int:
        """Steps a conversation is not reviewed after a veto (0: always reviewed)."""
        return self.settings.cooldown

    @property
    def identical_is_safe(self) -> bool:
        """Whether a candidate under which the agent acts identically is SAFE without an RM call."""
        return self.settings.identical_is_safe

    @property
    def identity(self) -> ScorerIdentity | None:
        """The weights the scorer runs (recorded on every decision); None when it does not say."""
        ident = getattr(self.scorer, "identity", None)
        return ident if isinstance(ident, ScorerIdentity) else None

    @property
    def audit_dropped(self) -> int:
        """Audit jobs not run: the queue was full (audit mode never blocks the agent) or closed."""
        return int(self._stats.snapshot()["audit_dropped"])

    @property
    def _vetoed_at(self) -> OrderedDict[str, Any]:
        return self._cooldowns.vetoed_at

    def stats(self) -> dict[str, Any]:
        """Health counters: reviews by verdict, skips and why, errors, timeouts, audit work, latency (ms).

        `veto` counts reviewed vetoes; a decision published without a review counts in `skipped`
        and in its own counter (`cooldown_skips`, `compaction_failures`, `audit_dropped`,
        `audit_failed`). `audit_queued` is audit work waiting or running now.

        Returns:
            A fresh snapshot (counter name to value); later changes do not touch it.
        """
        snapshot = self._stats.snapshot()
        snapshot["audit_queued"] = self._worker.queued if self._worker is not None else 0
        return snapshot

    # ------------------------------------------------------------------ the gate

    def gate(self, before: Sequence[Any] | None = None, *, conversation_id: str | None = None,
             step: int | None = None, must_reduce: bool = False, audit: bool | None = None) -> Gate:
        """Ask, before the inner compaction runs, whether this step is reviewed at all.

        Args:
            before: The caller's messages (any supported type); may be None when both
                `conversation_id` and `step` are given.
            conversation_id: The framework's thread/session id; None derives one from the
                opening of `before` (its first <= 8 messages).
            step: The agent's step; None counts the assistant turns in `before`, only when a
                cooldown has to be checked.
            must_reduce: The framework must shrink the context now (overflow, a HARD
                requirement): never skipped, and the review will not veto.
            audit: None follows the guard's mode; True makes this one review an audit review.

        Returns:
            The `Gate`. When `gate.review` is False do not call the inner compaction: publish
            `skip(gate, before)` and keep the context. The gate counts `cooldown_skips`.

        Raises:
            ValueError: Neither `before` nor `conversation_id` names the conversation, or a
                step is needed and neither `step` nor `before` gives it.
        """
        audit = self.mode == "audit" if audit is None else bool(audit)
        if conversation_id is None:
            if before is None:
                raise ValueError("gate() needs the messages (before) or a conversation_id")
            conversation_id = conversation_key(before)
            derived = True
        else:
            derived = False
        open_gate = Gate(review=True, conversation_id=conversation_id, step=step, must_reduce=must_reduce, audit=audit)
        if audit or must_reduce or self.cooldown == 0:
            return open_gate
        veto = self._cooldowns.get(conversation_id)
        if veto is None:
            return open_gate
        if step is None:
            if before is None:
                raise ValueError("gate() needs step= or the messages (before) to check a cooldown")
            step = assistant_turns(before)
        left = veto.left(step, self.cooldown)
        if left and derived and not veto.extended_by(before):
            left = 0  # same opening, another conversation: it never saw this veto
        if not left:
            return Gate(review=True, conversation_id=conversation_id, step=step, audit=audit)
        self._stats.add("cooldown_skips")
        reason = (f"cooldown after the veto at step {veto.step} (cooldown={self.cooldown}): "
                  f"reviews resume at step {veto.step + self.cooldown + 1}")
        return Gate(review=False, conversation_id=conversation_id, step=step, audit=audit, reason=reason)

    def skip(self, gate: Gate, before: Sequence[Any], *, strategy: str = "compaction") -> Decision:
        """Build and publish the decision for a step the gate skipped: `before`, untouched.

        Args:
            gate: The gate that said to skip (``gate.review`` is False).
            before: The context the caller keeps.
            strategy: The name of the compaction that was not run (shown in records).

        Returns:
            A `Verdict.VETO` decision with ``reviewed=False`` and ``skipped="cooldown"``, whose
            `messages` are `before`.

        Raises:
            ValueError: The gate says to review this step.
        """
        decision = self._skipped(gate, before, strategy)
        self.publish(decision)
        return decision

    async def askip(self, gate: Gate, before: Sequence[Any], *, strategy: str = "compaction") -> Decision:
        """`skip` from async code: sink writes run off the event loop.

        Args:
            gate: The gate that said to skip (``gate.review`` is False).
            before: The context the caller keeps.
            strategy: The name of the compaction that was not run (shown in records).

        Returns:
            The skipped step's decision, as `skip` builds it.

        Raises:
            ValueError: The gate says to review this step.
        """
        decision = self._skipped(gate, before, strategy)
        await self.apublish(decision)
        return decision

    def _skipped(self, gate: Gate, before: Sequence[Any], strategy: str) -> Decision:
        if gate.review:
            raise ValueError("the gate says to review this step: skip() is for a gate with review=False")
        return Decision(
            verdict=Verdict.VETO, mode="audit" if gate.audit else "enforce", messages=list(before),
            proposed_strategy=strategy, reasons=[gate.reason or "cooldown"], reviewed=False, skipped="cooldown",
            step=gate.step or 0, conversation_id=gate.conversation_id, scorer=self.identity,
        )

    # ------------------------------------------------------------------ reviews

    def review(self, event: CompactionEvent, policy: Policy | None = None, *, gate: Gate | None = None,
               fallbacks: Sequence[Strategy | Callable[..., Any]] | None = None,
               hard_budget: int | None = None, audit: bool | None = None) -> Decision:
        """Decide on `event`, probing `policy` as needed (blocking).

        Args:
            event: The proposed compaction. A `CompactionEvent.deferred` one is built on the
                audit worker for an audit review (the pending decision then holds no
                messages), and here otherwise.
            policy: The agent (messages -> next response, sync or async).
            gate: The gate asked for this step (`gate()`); None asks it here (cooldown
                included). Pass it so nothing is asked twice.
            fallbacks: Replaces the guard's chain for this call only (integrations bind
                framework-specific fallbacks to the current request this way).
            hard_budget: A token budget for this call only (a framework that must shrink now).
            audit: True runs this one review as an audit review on the guard's own worker
                (ignored when `gate` is given: the gate says).

        Returns:
            This call's own `Decision` (a pending one for an audit review; a skipped one when
            the gate says to skip).

        Raises:
            TypeError: `event` is not a `CompactionEvent`.
            ValueError: The review needs the agent and `policy` is None (the event carries no
                recorded and proposed responses, or fallbacks must be probed); `hard_budget` is
                not a positive int; `gate` was asked for another conversation than the event's.
        """
        event, gate, review = self._begin(event, policy, gate, fallbacks, hard_budget, audit)
        if not gate.review:
            return self.skip(gate, event.materialized().before, strategy=event.strategy)
        if review is None:
            return self._submit_audit(event, policy, gate)
        decision = self._drive_blocking(review.steps(), policy)
        self.publish(decision)
        return decision

    async def areview(self, event: CompactionEvent, policy: Policy | None = None, *, gate: Gate | None = None,
                      fallbacks: Sequence[Strategy | Callable[..., Any]] | None = None,
                      hard_budget: int | None = None, audit: bool | None = None) -> Decision:
        """Decide on `event` without blocking the event loop (same decisions as `review`).

        Blocking work (sync agents and strategies, scorer calls, token counts, sink writes) runs
        on the guard's own daemon threads. An async audit review probes the agent on this loop
        while the run lasts.

        Args:
            event: The proposed compaction (a deferred one is built as `review` says).
            policy: The agent (messages -> next response, sync or async).
            gate: The gate asked for this step (`gate()`); None asks it here.
            fallbacks: Replaces the guard's chain for this call only.
            hard_budget: A token budget for this call only.
            audit: True runs this one review as an audit review (ignored when `gate` is given).

        Returns:
            This call's own `Decision`, as `review` returns it.

        Raises:
            TypeError: `event` is not a `CompactionEvent`.
            ValueError: As `review`: no agent for a review that needs one, a bad `hard_budget`,
                or a gate for another conversation.
        """
        event, gate, review = self._begin(event, policy, gate, fallbacks, hard_budget, audit)
        if not gate.review:
            return await self.askip(gate, event.materialized().before, strategy=event.strategy)
        if review is None:  # audit: an async agent is probed on this loop while the run lasts
            probe = None if policy is None else _on_loop(policy, asyncio.get_running_loop(), asyncio.current_task())
            return self._submit_audit(event, probe, gate)
        decision = await self._drive_async(review.steps(), policy)
        await self.apublish(decision)
        return decision

    def publish(self, decision: Decision) -> None:
        """Record a decision: counters, sinks, `on_decision`.

        Reviews publish their own; an integration calls this for a decision it made itself (a
        compaction function that raised, say), so that no decision escapes the audit trail. A
        reviewed enforce-mode veto starts the conversation's cooldown. A sink or callback that
        fails is logged, never raised.

        Args:
            decision: The decision to record.
        """
        self._emit(decision)
        self._notify(decision)

    async def apublish(self, decision: Decision) -> None:
        """`publish` from async code: sink writes run off the event loop (on a daemon thread).

        Args:
            decision: The decision to record.
        """
        await call_async(self._emit, decision, pool=self._io_pool)
        self._notify(decision)

    def compaction_failed(self, before: list[Any], *, strategy: str, error: BaseException,
                          conversation_id: str | None = None) -> Decision:
        """The decision for a compaction that raised before it proposed anything: keep `before`.

        Counted in `stats()["compaction_failures"]`; publish it (`publish`/`apublish`) so the
        sinks and `on_decision` see it like any other decision without a review. The error is
        named by type only (its message may quote the conversation).

        Args:
            before: The context the caller keeps.
            strategy: The name of the compaction that raised.
            error: What it raised.
            conversation_id: The conversation's id; None derives one from `before`.

        Returns:
            A `Verdict.VETO` decision with ``reviewed=False`` and
            ``skipped="compaction_failed"``, not yet published.
        """
        logger.warning("memguard: compaction %s raised %s; keeping the full context", strategy, type(error).__name__)
        self._stats.add("compaction_failures")
        return Decision(
            verdict=Verdict.VETO, mode="audit" if self.mode == "audit" else "enforce", messages=list(before),
            proposed_strategy=strategy, reasons=[f"compaction raised {type(error).__name__}; nothing was compacted"],
            error=f"compaction failed: {type(error).__name__}", reviewed=False, skipped="compaction_failed",
            step=assistant_turns(before), conversation_id=conversation_id or conversation_key(before),
            scorer=self.identity,
        )

    # ------------------------------------------------------------------ lifecycle

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until queued audit work is written; True when the queue drained in time.

        Inside a running event loop this does not wait (an audit probe may need that very loop):
        it says whether the work is done already, and logs once that `await aflush()` is the
        call to make there.

        Args:
            timeout: Seconds to wait at most (None: until done).

        Returns:
            True when no audit work is left; False when some is still queued or running.
        """
        worker = self._worker
        if worker is None:
            return True
        if in_running_loop():
            self._warn_once("flush", "Guard.flush() inside a running event loop does not wait (audit probes may "
                                     "need that loop): use `await guard.aflush()`")
            return worker.idle()
        return worker.join(timeout)

    async def aflush(self, timeout: float | None = 30.0) -> bool:
        """Wait, without blocking the event loop, until queued audit work is written.

        Args:
            timeout: Seconds to wait at most (None: until done).

        Returns:
            True when the queue drained in time.
        """
        worker = self._worker
        if worker is None:
            return True
        return bool(await asyncio.wrap_future(start_daemon(worker.join, timeout, name="memguard-flush")))

    def close(self) -> None:
        """Finish queued audit work, then close the sinks; later audit reviews are counted as dropped.

        Inside a running event loop this returns at once and finishes in the background (an
        audit probe may need that very loop), logging once that `await aclose()` is the call to
        make there.
        """
        closing = self._start_closing()
        if closing is None:
            return
        if in_running_loop() and not closing.done():
            self._warn_once("close", "Guard.close() inside a running event loop: audit work finishes in the "
                                     "background; use `await guard.aclose()` to wait for it")
            return
        closing.result()

    async def aclose(self) -> None:
        """Finish queued audit work and close the sinks, without blocking the event loop."""
        closing = self._start_closing() or self._closing
        if closing is not None:
            await asyncio.wrap_future(closing)

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Guard:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _start_closing(self) -> concurrent.futures.Future[None] | None:
        """The closing work, started once (on a daemon thread when audit work is pending)."""
        with self._lock:
            if self._closing is not None:
                return None
            self._closed = True
            worker = self._worker
            if worker is None or worker.idle():
                closing: concurrent.futures.Future[None] = concurrent.futures.Future()
                self._closing = closing
            else:
                self._closing = start_daemon(self._finish_closing, name="memguard-close")
                return self._closing
        self._finish_closing()
        closing.set_result(None)
        return closing

    def _finish_closing(self) -> None:
        worker = self._worker
        if worker is not None:
            worker.stop(timeout=30.0)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - type only: messages may quote conversations
                logger.error("memguard: closing sink %s failed (%s)", type(sink).__name__, type(exc).__name__)

    def _warn_once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        logger.warning("memguard: %s", message)

    def compaction(self, policy: Policy | None = None, **options: Any) -> Callable[..., Any]:
        """Decorator for ``f(messages, ...) -> messages`` compaction functions (sync or async).

        The gate is asked before ``f`` runs (during a cooldown ``f`` is not called),
        ``f.with_decision(...)`` returns ``Compacted(messages, decision)``, and
        ``f.last_decision`` is per thread and asyncio task (`memguard.decorator` has the
        details).

        Args:
            policy: The agent (messages -> next response), probed on both contexts.
            **options: `strategy`, `on_decision`, `conversation_id`, `must_reduce`: see
                `memguard.decorator.guard_compaction`.

        Returns:
            A decorator that turns ``f`` into a `GuardedCompaction`.

        Raises:
            TypeError: `conversation_id` is neither a string nor a callable.
        """
        from memguard.decorator import guard_compaction

        return guard_compaction(self, policy=policy, **options)

    def conversation_id_of(self, event: CompactionEvent) -> str:
        """The event's own conversation id, or one derived from its opening messages.

        Args:
            event: The proposed compaction.

        Returns:
            ``event.conversation_id`` when set, else `conversation_key` of ``event.before``.
        """
        return event.conversation_id if event.conversation_id else conversation_key(event.materialized().before)

    # ------------------------------------------------------------------ starting a review

    def _begin(self, event: CompactionEvent, policy: Policy | None, gate: Gate | None,
               fallbacks: Sequence[Strategy | Callable[..., Any]] | None, hard_budget: int | None,
               audit: bool | None) -> tuple[CompactionEvent, Gate, Review | None]:
        """The event, the gate and the review to drive (None for an audit review).

        A deferred event is built here unless it goes to the audit worker, which builds it off the
        agent's path. Refuses a review that lacks its agent.
        """
        if not isinstance(event, CompactionEvent):
            raise TypeError(f"expected a CompactionEvent, got {type(event).__name__}")
        if gate is None and event.conversation_id is None:
            event = event.materialized()  # the derived conversation id reads the messages
        if hard_budget is not None and (isinstance(hard_budget, bool) or not isinstance(hard_budget, int)
                                        or hard_budget <= 0):
            raise ValueError(f"hard_budget must be a positive token count, got {hard_budget!r}")
        if gate is None:
            # Back-compat for direct callers: the gate is asked here. A per-call hard budget
            # means the framework must shrink now: no cooldown (as before), vetoes still allowed.
            gate = self.gate(event.before, conversation_id=event.conversation_id, step=event.step, audit=audit,
                             must_reduce=False) if hard_budget is None else Gate(
                review=True, conversation_id=self.conversation_id_of(event), step=event.step,
                audit=self.mode == "audit" if audit is None else bool(audit))
        elif event.conversation_id and event.conversation_id != gate.conversation_id:
            raise ValueError("the gate was asked for another conversation than the event's")
        chain = self.fallbacks if fallbacks is None else tuple(as_strategy(f) for f in fallbacks)
        # Refused whatever the gate says: a missing agent must not hide behind a cooldown that an
        # earlier score started.
        if policy is None and needs_agent(event, chain, audit=gate.audit):
            raise ValueError(
                "this review needs the agent: pass policy=... (a callable messages -> next response), "
                "or give the event recorded_response and proposed_response"
                + (" and no fallbacks (they must be probed)" if chain and not gate.audit else "")
            )
        if not gate.review or gate.audit:
            return event, gate, None
        event = event.materialized()
        return event, gate, Review(self.settings, event, conversation_id=gate.conversation_id, fallbacks=chain,
                            hard_budget=hard_budget if hard_budget is not None else self.hard_budget,
                            must_reduce=gate.must_reduce, step=gate.step)

    # ------------------------------------------------------------------ audit reviews

    def _audit_worker(self) -> AuditWorker:
        with self._lock:
            if self._worker is None:
                self._worker = AuditWorker(maxsize=self.settings.audit_queue_size)
                # Dropped without close(): end the thread. The callback holds the worker, not the guard.
                weakref.finalize(self, self._worker.abandon)
            return self._worker

    def _submit_audit(self, event: CompactionEvent, policy: Policy | None, gate: Gate) -> Decision:
        """Queue an audit review; the caller gets a pending decision at once (no per-message work)."""
        pending = pending_decision(self, event, gate)
        if self._closed:
            decision = dropped_decision(pending, "the guard is closed")
            self._stats.add("audit_dropped")
            self._emit(decision, sinks=False)  # the sinks are closed: counters and on_decision only
            self._notify(decision)
            return decision
        worker = self._audit_worker()
        job = AuditJob(self, event, policy, gate, pending, _run_audit)
        if worker.submit(job):
            self._stats.add("audit_submitted")
            return pending
        job.guard = None  # never queued: it ends here
        decision = dropped_decision(pending, "the audit queue is full")
        self._stats.add("audit_dropped")
        worker.notify(lambda: self.publish(decision))  # written by the worker, off the agent's path
        return decision

    def _audit_ended(self, decision: Decision, outcome: str) -> None:
        """How an audit job ended (`audit_completed`, `audit_failed`, `audit_dropped`): count, publish."""
        self._stats.add(outcome)
        self.publish(decision)

    # ------------------------------------------------------------------ publishing

    def _emit(self, decision: Decision, *, sinks: bool = True) -> None:
        self._stats.record(decision)
        if decision.verdict is Verdict.VETO and decision.reviewed and decision.mode == "enforce":
            self._record_veto(decision.conversation_id, decision.step, decision.messages)
        if decision.error and decision.reviewed:
            logger.warning("memguard: %s (on_error=%s, verdict=%s)", decision.error, self.on_error,
                           decision.verdict.value)
        if sinks:
            emit_all(self.sinks, decision)

    def _notify(self, decision: Decision) -> None:
        if self.on_decision is not None:
            try:
                self.on_decision(decision)
            except Exception as exc:  # noqa: BLE001 - a user callback must not break the agent
                logger.error("memguard: on_decision callback failed (%s)", type(exc).__name__)

    # ------------------------------------------------------------------ drivers

    def _drive_blocking(self, steps: Steps, policy: Policy | None) -> Decision:
        reply: Any = None
        while True:
            try:
                request = steps.send(reply)
            except StopIteration as stop:
                return self._signed(stop.value)
            reply = self._answer_blocking(request, policy)

    async def _drive_async(self, steps: Steps, policy: Policy | None) -> Decision:
        reply: Any = None
        while True:
            try:
                request = steps.send(reply)
            except StopIteration as stop:
                return self._signed(stop.value)
            reply = await self._answer_async(request, policy)

    def _signed(self, decision: Decision) -> Decision:
        """Name the weights that scored it: a remote scorer knows them only after its first call."""
        decision.scorer = self.identity
        return decision

    def _answer_blocking(self, request: Any, policy: Policy | None) -> Any:
        if isinstance(request, ProbeRequest):
            return self._probe_blocking(request, policy)
        if isinstance(request, ScoreRequest):
            return self._score_blocking(request)
        if isinstance(request, StrategyRequest):
            return self._guarded_call(lambda: call_blocking(request.strategy, request.messages, timeout=self.timeout))
        if isinstance(request, TokenCountRequest):
            return self._count_tokens(request.messages)
        raise TypeError(f"unknown review request {type(request).__name__}")

    async def _answer_async(self, request: Any, policy: Policy | None) -> Any:
        if isinstance(request, ProbeRequest):
            return await self._probe_async(request, policy)
        if isinstance(request, ScoreRequest):
            return await self._score_async(request)
        if isinstance(request, StrategyRequest):
            try:
                return await call_async(request.strategy, request.messages, timeout=self.timeout)
            except Exception as exc:  # noqa: BLE001 - a broken fallback is skipped by the review
                return self._failure(exc)
        if isinstance(request, TokenCountRequest):
            return await call_async(self._count_tokens, request.messages, pool=self._io_pool)
        raise TypeError(f"unknown review request {type(request).__name__}")

    def _failure(self, exc: BaseException) -> Failure:
        if isinstance(exc, TimeoutError):
            self._stats.add("timeouts")
        return Failure(exc)

    def _guarded_call(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - MemoryError and CUDA OOM included: reported, not raised
            return self._failure(exc)

    def _probe_blocking(self, request: ProbeRequest, policy: Policy | None) -> list[Any]:
        agent = _require(policy)
        self._stats.add("probe_calls", len(request.contexts))
        if len(request.contexts) == 1:
            return [self._probe_one_blocking(agent, request.contexts[0])]
        results: list[Any] = [None] * len(request.contexts)

        def run(i: int) -> None:
            results[i] = self._probe_one_blocking(agent, request.contexts[i])

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(request.contexts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    def _probe_one_blocking(self, policy: Policy, context: list[Any]) -> Any:
        return self._guarded_call(lambda: call_blocking(policy, list(context), timeout=self.timeout))

    async def _probe_async(self, request: ProbeRequest, policy: Policy | None) -> list[Any]:
        agent = _require(policy)
        self._stats.add("probe_calls", len(request.contexts))

        async def one(context: list[Any]) -> Any:
            try:
                return await call_async(agent, list(context), timeout=self.timeout)
            except Exception as exc:  # noqa: BLE001
                return self._failure(exc)

        return list(await asyncio.gather(*(one(c) for c in request.contexts)))

    def _scorer_backlog(self) -> Failure | None:
        stalled = self._stats.stalled
        if stalled >= self.settings.max_stalled_calls:
            return Failure(ScorerBacklog(f"scorer backlog: {stalled} timed-out calls still running"))
        return None

    def _score_blocking(self, request: ScoreRequest) -> list[Score] | Failure:
        backlog = self._scorer_backlog()
        if backlog is not None:
            return backlog
        self._stats.add("scorer_calls")
        self._stats.add("scored_prompts", len(request.prompts))
        result: list[Score] | Failure = self._guarded_call(
            lambda: call_blocking(self.scorer.score, request.prompts, timeout=self.timeout, stalls=self._stats))
        return result

    async def _score_async(self, request: ScoreRequest) -> list[Score] | Failure:
        # The same bounded path as `_score_blocking`: `score` on a daemon thread (never `ascore`,
        # whose default-executor thread a timeout cannot count or `asyncio.run` leave behind).
        backlog = self._scorer_backlog()
        if backlog is not None:
            return backlog
        self._stats.add("scorer_calls")
        self._stats.add("scored_prompts", len(request.prompts))
        try:
            result: list[Score] = await call_async(self.scorer.score, request.prompts, timeout=self.timeout,
                                                   stalls=self._stats, pool=self._score_pool)
            return result
        except Exception as exc:  # noqa: BLE001
            return self._failure(exc)

    # ------------------------------------------------------------------ state the review asks for

    def _count_tokens(self, messages: list[Message]) -> int:
        """Context size for the hard budget: the user's counter, the RM's tokenizer, or chars/4."""
        try:
            if self._token_counter is not None:
                return int(self._token_counter(messages))
            text = render_turns(messages)
            counter = getattr(self.scorer, "count_tokens", None)
            if callable(counter):
                return int(counter(text))
        except Exception as exc:  # noqa: BLE001 - an estimate beats no answer under a hard budget
            logger.warning("memguard: token counting failed (%s); estimating from characters", type(exc).__name__)
            text = render_turns(messages)
        return len(text) // 4  # no tokenizer at hand: ~4 characters per token

    def count_tokens(self, messages: list[Message]) -> int:
        """The size the hard budget sees for `messages` (blocking).

        Args:
            messages: The context to measure.

        Returns:
            Its tokens: by the guard's `token_counter`, else the scorer's tokenizer on the
            rendered turns, else about one token per 4 characters (also when counting fails).
        """
        return self._count_tokens(messages)

    def cooldown_left(self, conversation_id: str, step: int, *, before: Sequence[Any] | None = None) -> int:
        """Steps, this one included, that `conversation_id` is still skipped after a veto (0: review).

        After a veto at step ``s``, ``cooldown=N`` skips the steps ``s+1 .. s+N`` (and ``s``
        itself): at ``s+1`` this is N, at ``s+N`` 1, from ``s+N+1`` on 0. Read-only (no counter,
        no LRU touch): `gate` is what drivers ask. A derived id's cooldown holds only for a
        context that extends the vetoed one: pass `before` to check that.

        Args:
            conversation_id: The conversation.
            step: The step to ask about.
            before: The context at `step`; None skips the check that it extends the vetoed one.

        Returns:
            The steps still skipped, counting `step` itself (0: `step` is reviewed).
        """
        if self.cooldown == 0:
            return 0
        veto = self._cooldowns.peek(conversation_id)
        if veto is None:
            return 0
        left = veto.left(step, self.cooldown)
        if left and before is not None and not veto.extended_by(before):
            return 0
        return left

    def step_of(self, event: CompactionEvent) -> int:
        """The step a review judges `event` at.

        Args:
            event: The proposed compaction.

        Returns:
            ``event.step`` when set, else the number of assistant turns in ``event.before``.
        """
        return step_of(event if event.step is not None else event.materialized())

    def acceptable(self, p_harmful: float) -> bool:
        """Whether one score passes the commit rule (and the band, with `band_gate`).

        Args:
            p_harmful: MemRM's P(HARMFUL) for a candidate.

        Returns:
            True when a candidate with this score may be committed.
        """
        return self.settings.acceptable(p_harmful)

    def band_for(self, p_harmful: float) -> str:
        """The coverage band this guard reports for one score (`band_of` with its settings).

        Args:
            p_harmful: MemRM's P(HARMFUL).

        Returns:
            "safe", "uncertain" or "harmful".
        """
        return self.settings.band_of(p_harmful)

    def record_veto(self, conversation_id: str, step: int, *, before: Sequence[Any] | None = None) -> None:
        """Start a cooldown for `conversation_id` at `step` (the guard does this after each veto).

        Only a veto the guard did not publish itself needs this.

        Args:
            conversation_id: The conversation to cool down.
            step: The step of the veto.
            before: The vetoed context. For an id derived from it (`conversation_key`) it
                anchors the cooldown to this very context, so a conversation that merely opens
                the same way is not skipped (see `gate`).
        """
        self._record_veto(conversation_id, step, before)

    def _record_veto(self, conversation_id: str, step: int, vetoed: Sequence[Any] | None) -> None:
        derived = vetoed is not None and len(vetoed) > 0 and conversation_id == conversation_key(vetoed)
        self._cooldowns.record(conversation_id, step, vetoed if derived else None)


def _run_audit(guard: Guard, event: CompactionEvent, policy: Policy | None, gate: Gate) -> Decision:
    """An audit review, on the worker thread (the step and the format are worked out here)."""
    event = event.materialized()  # a deferred event's messages are built here, off the agent's path
    review = Review(guard.settings, event, conversation_id=gate.conversation_id, audit=True, step=gate.step)
    return guard._drive_blocking(review.steps(), policy)


def _on_loop(policy: Policy, loop: asyncio.AbstractEventLoop, owner: asyncio.Task[Any] | None) -> Policy:
    """`policy` for the audit worker thread: a coroutine it returns runs on the caller's `loop`.

    Loop-bound clients (an httpx `AsyncClient`, a LangChain async model) then work as in the
    agent itself, in an empty context (nothing of the run's reaches the probe). When the run
    (`owner`) is over or that loop stops first, the same coroutine runs on a fresh loop instead,
    or, if it had already begun there, the agent is probed afresh.
    """

    def on_loop(messages: list[Any]) -> Any:
        result = policy(messages)
        if not inspect.isawaitable(result) or loop.is_closed() or not loop.is_running():
            return result
        handoff, value = await_on_loop(result, loop, owner=owner)
        if handoff is Handoff.NOT_STARTED:
            return result  # untouched: the worker awaits it on a loop of its own
        if handoff is Handoff.INTERRUPTED:
            return policy(messages)
        return value

    return on_loop


def _require(policy: Policy | None) -> Policy:
    if policy is None:  # _start refuses this before any scoring; a guard for the invariant
        raise ValueError("this review needs the agent: pass policy=...")
    return policy


def guarded(
    *,
    policy: Policy | None = None,
    guard: Guard | None = None,
    scorer: Scorer | None = None,
    strategy: str | None = None,
    on_decision: Callable[[Decision], Any] | None = None,
    conversation_id: str | Callable[[list[Any]], str] | None = None,
    must_reduce: bool | Callable[[list[Any]], bool] = False,
    **guard_options: Any,
) -> Callable[..., Any]:
    """Guard a compaction function with an existing `Guard` or a new one.

    ``@guarded(scorer=MemRM.from_pretrained(), policy=agent)`` builds the guard;
    ``@guarded(guard=guard, policy=agent)`` shares one. Otherwise as `Guard.compaction`.

    Args:
        policy: The agent (messages -> next response), probed on both contexts.
        guard: The guard to use; None builds one from `scorer` and `guard_options`.
        scorer: The scorer for a new guard.
        strategy: The name the compaction goes by (default: the function's name).
        on_decision: Called with every decision of this function.
        conversation_id: A string, or a callable of the messages, naming the conversation.
        must_reduce: True (or a callable of the messages saying so) when the context must
            shrink now: such a call is never skipped and never vetoed.
        **guard_options: `Guard` keywords for a new guard.

    Returns:
        A decorator that turns ``f`` into a `GuardedCompaction`.

    Raises:
        ValueError: Neither `guard` nor `scorer` is given, or `guard_options` are given beside
            an existing `guard`.
    """
    if guard is None:
        if scorer is None:
            raise ValueError("guarded(...) needs guard=Guard(...) or scorer=... to build one")
        guard = Guard(scorer, **guard_options)
    elif guard_options:
        raise ValueError(f"guard options {sorted(guard_options)} given beside an existing guard")
    return guard.compaction(policy=policy, strategy=strategy, on_decision=on_decision,
                            conversation_id=conversation_id, must_reduce=must_reduce)
