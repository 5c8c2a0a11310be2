"""The guard: review a proposed compaction, probe the agent, score, decide, fall back, audit.

`Guard` holds the configuration (one frozen `GuardSettings`), the per-conversation cooldown
state, the health counters and the sinks, and performs every call. The decision itself is
`memguard.review.Review`, a sans-IO generator that never calls back into the guard: `review`
answers its requests with blocking calls, `areview` with awaits that keep blocking work (sync
strategies, token counting, sink writes, sync agents and scorers) off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from memguard._concurrency import Handoff, await_on_loop, call_async, call_blocking, is_async_callable
from memguard.audit import AuditWorker, Sink, emit_all
from memguard.events import CompactionEvent, Decision, Verdict
from memguard.messages import Message, role_and_text
from memguard.protocol import render_turns
from memguard.review import (
    CooldownRequest,
    Failure,
    ProbeRequest,
    Review,
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

__all__ = ["Guard", "Policy", "band_of", "conversation_key", "guarded"]

logger = logging.getLogger("memguard")

Policy = Callable[[list[Any]], Any]
"""The agent: maps a message list (the caller's type) to its next response (sync or async)."""


def band_of(p_harmful: float, band: float | None, threshold: float = 0.5) -> str:
    """The published coverage rule: covered iff P(SAFE) ≥ t or ≤ 1 − t, else uncertain."""
    return band_label(p_harmful, band, threshold)


def conversation_key(messages: Sequence[Any]) -> str:
    """A stable id for a conversation that names none: its system prompt(s), task and first action.

    Those open the context and stay put while a conversation grows, and a veto leaves them as they
    were, so every proposal the conversation makes until a compaction commits maps to the same id.
    Only the first few messages are read (this runs on the agent's path even in audit mode).
    """
    opening: list[tuple[str, str]] = []
    for index, item in enumerate(messages):
        role, text = role_and_text(item, index=index)
        opening.append((role, text))
        if role == "assistant" or len(opening) >= 8:
            break
    digest = hashlib.sha256(json.dumps(opening, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    return "auto-" + digest.hexdigest()[:16]


class Guard:
    """Decide, for each proposed compaction, whether to commit it, fall back, or veto.

    The one commit rule: a candidate is committed iff P(HARMFUL) < `threshold`. Otherwise the
    guard tries `fallbacks` in order, and failing those vetoes: the agent keeps its full context
    and nothing is lost. The coverage band is reported on every candidate; with `band_gate=True`
    an uncertain score is not committed either. With `hard_budget` (tokens) the context must
    shrink, so instead of a veto the lowest-risk candidate that fits is committed.

    Options are those of `GuardSettings` (or pass `settings=`); `sinks`, `on_decision` and
    `token_counter` are objects, not settings.
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
        self.scorer = scorer
        self.sinks: list[Sink] = list(sinks)
        self.on_decision = on_decision
        self._token_counter = token_counter
        self._stats = GuardStats(self.settings.on_error)
        self._vetoed_at: OrderedDict[str, int] = OrderedDict()
        self._state_lock = threading.Lock()
        self._closed = False
        self._worker = AuditWorker(maxsize=self.settings.audit_queue_size) if self.mode == "audit" else None
        for sink in self.sinks:
            attach = getattr(sink, "attach", None)
            if callable(attach):
                attach(self.stats)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str], *, scorer: Scorer | None = None, **overrides: Any) -> Guard:
        """A guard from a TOML file (see `memguard.config`); keywords override the file."""
        from memguard.config import build_guard, load_config

        return build_guard(load_config(path), scorer=scorer, **overrides)

    # ------------------------------------------------------------------ settings, read-only

    @property
    def mode(self) -> str:
        return self.settings.mode

    @property
    def threshold(self) -> float:
        return self.settings.threshold

    @property
    def band(self) -> float | None:
        return self.settings.band

    @property
    def band_gate(self) -> bool:
        return self.settings.band_gate

    @property
    def uncertain(self) -> str:
        return self.settings.uncertain

    @property
    def fallbacks(self) -> tuple[Strategy, ...]:
        return self.settings.fallbacks

    @property
    def search(self) -> str:
        return self.settings.search

    @property
    def hard_budget(self) -> int | None:
        return self.settings.hard_budget

    @property
    def on_error(self) -> str:
        return self.settings.on_error

    @property
    def timeout(self) -> float | None:
        return self.settings.timeout

    @property
    def cooldown(self) -> int:
        return self.settings.cooldown

    @property
    def identical_is_safe(self) -> bool:
        return self.settings.identical_is_safe

    @property
    def identity(self) -> ScorerIdentity | None:
        ident = getattr(self.scorer, "identity", None)
        return ident if isinstance(ident, ScorerIdentity) else None

    @property
    def audit_dropped(self) -> int:
        """Audit jobs not run: the queue was full (audit mode never blocks the agent) or closed."""
        return int(self._stats.snapshot()["audit_dropped"])

    def stats(self) -> dict[str, Any]:
        """Health counters: decisions by verdict, errors, timeouts, dropped audits, latency (ms)."""
        snapshot = self._stats.snapshot()
        if self._worker is not None:
            snapshot["audit_queued"] = self._worker.queued
        return snapshot

    # ------------------------------------------------------------------ public API

    def review(self, event: CompactionEvent, policy: Policy | None = None, *,
               fallbacks: Sequence[Strategy | Callable[..., Any]] | None = None,
               hard_budget: int | None = None) -> Decision:
        """Decide on `event`, probing `policy` as needed (blocking).

        `fallbacks`, when given, replaces the guard's own chain for this call only (integrations
        bind framework-specific fallbacks to the current request this way); `hard_budget` sets a
        budget for this call only (a framework that must shrink the context now).
        """
        review = self._start(event, policy, fallbacks, hard_budget)
        if review is None:
            return self._enqueue_audit(event, policy)
        decision = self._drive_blocking(review.steps(), policy)
        self.publish(decision)
        return decision

    async def areview(self, event: CompactionEvent, policy: Policy | None = None, *,
                      fallbacks: Sequence[Strategy | Callable[..., Any]] | None = None,
                      hard_budget: int | None = None) -> Decision:
        """Decide on `event` without blocking the event loop (same decisions as `review`)."""
        review = self._start(event, policy, fallbacks, hard_budget)
        if review is None:  # audit: an async agent is probed on this loop while it runs
            return self._enqueue_audit(event, None if policy is None else _on_loop(policy, asyncio.get_running_loop()))
        decision = await self._drive_async(review.steps(), policy)
        await self.apublish(decision)
        return decision

    def publish(self, decision: Decision) -> None:
        """Record a decision: counters, sinks, `on_decision`.

        Reviews publish their own; an integration calls this for a decision it made itself (a
        compaction function that raised, say), so that no decision escapes the audit trail.
        """
        self._emit(decision)
        self._notify(decision)

    async def apublish(self, decision: Decision) -> None:
        """`publish` from async code: sink writes run off the event loop."""
        await asyncio.to_thread(self._emit, decision)
        self._notify(decision)

    def compaction_failed(self, before: list[Any], *, strategy: str, error: BaseException,
                          conversation_id: str | None = None) -> Decision:
        """The decision for a compaction that raised before it proposed anything: keep `before`.

        Counted in `stats()["compaction_failures"]`; publish it (`publish`/`apublish`) so the
        sinks and `on_decision` see it like any other veto. The error is named by type only.
        """
        logger.warning("memguard: compaction %s raised %s; keeping the full context", strategy, type(error).__name__)
        self._stats.add("compaction_failures")
        event = CompactionEvent(before=before, candidate=before, strategy=strategy, conversation_id=conversation_id)
        return Decision(
            verdict=Verdict.VETO, mode="audit" if self.mode == "audit" else "enforce", messages=list(before),
            proposed_strategy=strategy, reasons=[f"compaction raised {type(error).__name__}; nothing was compacted"],
            error=f"compaction failed: {type(error).__name__}", reviewed=False, step=step_of(event),
            conversation_id=self.conversation_id_of(event), event_id=event.event_id, scorer=self.identity,
        )

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until queued audit work is written; True when the queue drained in time."""
        return self._worker.join(timeout) if self._worker else True

    def close(self) -> None:
        """Flush audit work and close the sinks; later audit reviews are counted as dropped."""
        self._closed = True
        if self._worker:
            self._worker.stop()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - type only: messages may quote conversations
                logger.error("memguard: closing sink %s failed (%s)", type(sink).__name__, type(exc).__name__)

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def compaction(self, policy: Policy | None = None, **options: Any) -> Callable[..., Any]:
        """Decorator for ``f(messages, ...) -> messages`` compaction functions (sync or async)."""
        from memguard.decorator import guard_compaction

        return guard_compaction(self, policy=policy, **options)

    def conversation_id_of(self, event: CompactionEvent) -> str:
        """The event's own id, or one derived from its opening messages (see `conversation_key`)."""
        return event.conversation_id if event.conversation_id else conversation_key(event.before)

    # ------------------------------------------------------------------ starting a review

    def _start(self, event: CompactionEvent, policy: Policy | None,
               fallbacks: Sequence[Strategy | Callable[..., Any]] | None, hard_budget: int | None) -> Review | None:
        """The review to drive, or None for audit mode; refuses a review that lacks its agent."""
        if not isinstance(event, CompactionEvent):
            raise TypeError(f"expected a CompactionEvent, got {type(event).__name__}")
        if hard_budget is not None and (isinstance(hard_budget, bool) or not isinstance(hard_budget, int)
                                        or hard_budget <= 0):
            raise ValueError(f"hard_budget must be a positive token count, got {hard_budget!r}")
        audit = self.mode == "audit"
        chain = self.fallbacks if fallbacks is None else tuple(as_strategy(f) for f in fallbacks)
        if policy is None and needs_agent(event, chain, audit=audit):
            raise ValueError(
                "this review needs the agent: pass policy=... (a callable messages -> next response), "
                "or give the event recorded_response and proposed_response"
                + (" and no fallbacks (they must be probed)" if chain and not audit else "")
            )
        if audit:
            return None
        return Review(self.settings, event, conversation_id=self.conversation_id_of(event), fallbacks=chain,
                      hard_budget=hard_budget if hard_budget is not None else self.hard_budget)

    # ------------------------------------------------------------------ audit mode

    def _enqueue_audit(self, event: CompactionEvent, policy: Policy | None) -> Decision:
        immediate = Decision(
            verdict=Verdict.AUDIT,
            mode="audit",
            messages=list(event.candidate),
            strategy=event.strategy,
            proposed_strategy=event.strategy,
            step=event.step if event.step is not None else step_of(event),
            conversation_id=self.conversation_id_of(event),
            event_id=event.event_id,
            scorer=self.identity,
            pending=True,
        )

        def job() -> None:
            review = Review(self.settings, event, conversation_id=immediate.conversation_id, audit=True)
            decision = self._drive_blocking(review.steps(), policy)
            self._stats.add("audit_completed")
            self.publish(decision)

        worker = self._worker
        if worker is not None and not self._closed and worker.submit(job):
            self._stats.add("audit_submitted")
            return immediate
        why = "the guard is closed" if self._closed or worker is None else "the audit queue is full"
        self._stats.add("audit_dropped")
        return immediate.model_copy(update={
            "pending": False, "reviewed": False, "error": f"audit dropped: {why}",
            "reasons": [f"not reviewed: {why} (counted in stats()['audit_dropped'])"],
        })

    def _emit(self, decision: Decision) -> None:
        self._stats.record(decision)
        if decision.verdict is Verdict.VETO and decision.reviewed and decision.mode == "enforce":
            self._record_veto(decision.conversation_id, decision.step)
        if decision.error and decision.reviewed:
            logger.warning("memguard: %s (on_error=%s, verdict=%s)", decision.error, self.on_error,
                           decision.verdict.value)
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
        if isinstance(request, CooldownRequest):
            return self._cooldown_answer(request)
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
            return await asyncio.to_thread(self._count_tokens, request.messages)
        if isinstance(request, CooldownRequest):
            return self._cooldown_answer(request)
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
            return Failure(RuntimeError(f"scorer backlog: {stalled} timed-out calls still running"))
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
        backlog = self._scorer_backlog()
        if backlog is not None:
            return backlog
        self._stats.add("scorer_calls")
        self._stats.add("scored_prompts", len(request.prompts))
        ascore = getattr(self.scorer, "ascore", None)
        fn: Callable[..., Any] = ascore if ascore is not None and is_async_callable(ascore) else self.scorer.score
        try:
            result: list[Score] = await call_async(fn, request.prompts, timeout=self.timeout, stalls=self._stats)
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
        """The size the hard budget sees for `messages` (blocking)."""
        return self._count_tokens(messages)

    def cooldown_left(self, conversation_id: str, step: int) -> int:
        """Steps left before `conversation_id` is reviewed again after a veto (0: review now).

        Read-only: integrations that must skip work during a cooldown (not even ask their
        compaction) consult it; the review asks the same through a `CooldownRequest`.
        """
        if self.cooldown == 0:
            return 0
        with self._state_lock:
            last = self._vetoed_at.get(conversation_id)
        if last is None or step < last:
            return 0
        return max(0, self.cooldown - (step - last))

    def step_of(self, event: CompactionEvent) -> int:
        """The event's step, or the number of assistant turns in `before`."""
        return step_of(event)

    def acceptable(self, p_harmful: float) -> bool:
        """The commit rule (and the band, with `band_gate`) for one score."""
        return self.settings.acceptable(p_harmful)

    def band_for(self, p_harmful: float) -> str:
        return self.settings.band_of(p_harmful)

    def _cooldown_answer(self, request: CooldownRequest) -> int:
        left = self.cooldown_left(request.conversation_id, request.step)
        with self._state_lock:
            if request.conversation_id in self._vetoed_at:
                self._vetoed_at.move_to_end(request.conversation_id)  # recently seen: kept longest
        if left:
            self._stats.add("cooldown_skips")
        return left

    def record_veto(self, conversation_id: str, step: int) -> None:
        """Start a cooldown for `conversation_id` at `step` (the guard does this after each veto)."""
        self._record_veto(conversation_id, step)

    def _record_veto(self, conversation_id: str, step: int) -> None:
        with self._state_lock:
            self._vetoed_at[conversation_id] = step
            self._vetoed_at.move_to_end(conversation_id)
            while len(self._vetoed_at) > self.settings.max_conversations:
                self._vetoed_at.popitem(last=False)


def _on_loop(policy: Policy, loop: asyncio.AbstractEventLoop) -> Policy:
    """`policy` for the audit worker thread: a coroutine it returns runs on the caller's `loop`.

    Loop-bound clients (an httpx `AsyncClient`, a LangChain async model) then work as in the
    agent itself. When that loop stops first, the same coroutine runs on a fresh loop instead,
    or, if it had already begun there, the agent is probed afresh.
    """

    def on_loop(messages: list[Any]) -> Any:
        result = policy(messages)
        if not inspect.isawaitable(result) or loop.is_closed() or not loop.is_running():
            return result
        handoff, value = await_on_loop(result, loop)
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
    **guard_options: Any,
) -> Callable[..., Any]:
    """Module-level decorator: guard a compaction function with an existing or a new `Guard`."""
    if guard is None:
        if scorer is None:
            raise ValueError("guarded(...) needs guard=Guard(...) or scorer=... to build one")
        guard = Guard(scorer, **guard_options)
    elif guard_options:
        raise ValueError(f"guard options {sorted(guard_options)} given beside an existing guard")
    return guard.compaction(policy=policy, strategy=strategy, on_decision=on_decision,
                            conversation_id=conversation_id)
