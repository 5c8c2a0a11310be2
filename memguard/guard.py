"""The guard: review a proposed compaction, probe the agent, score, decide, fall back, audit.

`Guard` holds the policy (thresholds, fallbacks, error handling, cooldown state, sinks) and runs
I/O. The decision logic itself is `memguard.review.Review`, a sans-IO generator: `review` drives
it with blocking calls and `areview` with awaits, so both reach the same decision.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

from memguard._concurrency import call_async, call_blocking
from memguard.audit import AuditWorker, Sink, emit_all
from memguard.events import CompactionEvent, Decision, Verdict
from memguard.messages import Message, to_messages
from memguard.protocol import coverage_band, render_turns
from memguard.review import Failure, ProbeRequest, Review, ScoreRequest, Steps
from memguard.scoring.base import Score, Scorer, ScorerIdentity
from memguard.strategies import Strategy, as_strategy

__all__ = ["Guard", "Policy", "band_of", "guarded"]

logger = logging.getLogger("memguard")

Policy = Callable[[list[Any]], Any]
"""The agent: maps a message list (the caller's type) to its next response (sync or async)."""


def band_of(p_harmful: float, band: float | None, threshold: float = 0.5) -> str:
    """The published coverage rule: covered iff P(SAFE) ≥ t or ≤ 1 − t, else uncertain."""
    if band is None:
        return "harmful" if p_harmful >= threshold else "safe"
    return coverage_band(p_harmful, band)


class Guard:
    """Decide, for each proposed compaction, whether to commit it, fall back, or veto.

    Enforce mode commits when P(HARMFUL) < `threshold` (and the band is not "uncertain" while
    `uncertain="harmful"`), otherwise tries `fallbacks` in order, otherwise vetoes: the agent
    keeps its full context and nothing is lost. With `hard_budget` (tokens) the context must
    shrink, so instead of a veto the lowest-risk candidate that fits is committed.
    """

    def __init__(
        self,
        scorer: Scorer,
        *,
        mode: Literal["enforce", "audit"] = "enforce",
        threshold: float = 0.5,
        band: float | None = 0.88,
        uncertain: Literal["harmful", "safe"] = "harmful",
        fallbacks: Sequence[Strategy | Callable[..., Any]] = (),
        search: Literal["sequential", "parallel"] = "sequential",
        hard_budget: int | None = None,
        on_error: Literal["open", "closed"] = "open",
        timeout: float | None = None,
        sinks: Sequence[Sink] = (),
        cooldown: int = 3,
        identical_is_safe: bool = True,
        token_counter: Callable[[list[Message]], int] | None = None,
        audit_queue_size: int = 1024,
        on_decision: Callable[[Decision], Any] | None = None,
    ) -> None:
        if mode not in ("enforce", "audit"):
            raise ValueError(f"mode must be 'enforce' or 'audit', got {mode!r}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        if band is not None and not 0.5 <= band <= 1.0:
            raise ValueError(f"band must be in [0.5, 1] or None, got {band!r}")
        if uncertain not in ("harmful", "safe"):
            raise ValueError(f"uncertain must be 'harmful' or 'safe', got {uncertain!r}")
        if search not in ("sequential", "parallel"):
            raise ValueError(f"search must be 'sequential' or 'parallel', got {search!r}")
        if on_error not in ("open", "closed"):
            raise ValueError(f"on_error must be 'open' or 'closed', got {on_error!r}")
        if hard_budget is not None and hard_budget <= 0:
            raise ValueError(f"hard_budget must be a positive token count, got {hard_budget!r}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
        if cooldown < 0:
            raise ValueError(f"cooldown must be >= 0 steps, got {cooldown!r}")
        if not callable(getattr(scorer, "score", None)):
            raise TypeError("scorer must have score(list[str]) -> list[Score] (MemRM, RemoteMemRM, ...)")
        self.scorer = scorer
        self.mode = mode
        self.threshold = threshold
        self.band = band
        self.uncertain = uncertain
        self.fallbacks: tuple[Strategy, ...] = tuple(as_strategy(f) for f in fallbacks)
        self.search = search
        self.hard_budget = hard_budget
        self.on_error = on_error
        self.timeout = timeout
        self.sinks: list[Sink] = list(sinks)
        self.cooldown = cooldown
        self.identical_is_safe = identical_is_safe
        self.on_decision = on_decision
        self._token_counter = token_counter
        self._vetoed_at: dict[str, int] = {}
        self._state_lock = threading.Lock()
        self._worker = AuditWorker(maxsize=audit_queue_size) if mode == "audit" else None

    @classmethod
    def from_config(cls, path: str | os.PathLike[str], *, scorer: Scorer | None = None, **overrides: Any) -> Guard:
        """A guard from a TOML file (see `memguard.config`); keywords override the file."""
        from memguard.config import build_guard, load_config

        return build_guard(load_config(path), scorer=scorer, **overrides)

    # ------------------------------------------------------------------ public API

    @property
    def identity(self) -> ScorerIdentity | None:
        ident = getattr(self.scorer, "identity", None)
        return ident if isinstance(ident, ScorerIdentity) else None

    @property
    def audit_dropped(self) -> int:
        """Audit jobs dropped because the queue was full (audit mode never blocks the agent)."""
        return self._worker.dropped if self._worker else 0

    def review(self, event: CompactionEvent, policy: Policy | None = None, *,
               fallbacks: Sequence[Strategy | Callable[..., Any]] | None = None) -> Decision:
        """Decide on `event`, probing `policy` as needed (blocking).

        `fallbacks`, when given, replaces the guard's own chain for this call only (integrations
        bind framework-specific fallbacks to the current request this way).
        """
        if self.mode == "audit":
            return self._enqueue_audit(event, policy)
        steps = Review(self, event, audit=False, fallbacks=self._chain(fallbacks)).steps()
        decision = self._drive_blocking(steps, policy)
        self._publish(decision)
        return decision

    async def areview(self, event: CompactionEvent, policy: Policy | None = None, *,
                      fallbacks: Sequence[Strategy | Callable[..., Any]] | None = None) -> Decision:
        """Decide on `event` without blocking the event loop (same decisions as `review`)."""
        if self.mode == "audit":
            return self._enqueue_audit(event, policy)
        steps = Review(self, event, audit=False, fallbacks=self._chain(fallbacks)).steps()
        decision = await self._drive_async(steps, policy)
        self._publish(decision)
        return decision

    def _chain(self, fallbacks: Sequence[Strategy | Callable[..., Any]] | None) -> tuple[Strategy, ...]:
        return self.fallbacks if fallbacks is None else tuple(as_strategy(f) for f in fallbacks)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until queued audit work is written; True when the queue drained in time."""
        return self._worker.join(timeout) if self._worker else True

    def close(self) -> None:
        """Flush audit work and close the sinks."""
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

    # ------------------------------------------------------------------ audit mode

    def _enqueue_audit(self, event: CompactionEvent, policy: Policy | None) -> Decision:
        immediate = Decision(
            verdict=Verdict.AUDIT,
            mode="audit",
            messages=list(event.candidate),
            strategy=event.strategy,
            proposed_strategy=event.strategy,
            step=self.step_of(event),
            conversation_id=event.conversation_id,
            event_id=event.event_id,
            scorer=self.identity,
            pending=True,
        )

        def job() -> None:
            decision = self._drive_blocking(Review(self, event, audit=True, fallbacks=()).steps(), policy)
            self._publish(decision)

        self._worker.submit(job)  # type: ignore[union-attr]
        return immediate

    def _publish(self, decision: Decision) -> None:
        emit_all(self.sinks, decision)
        if self.on_decision is not None:
            try:
                self.on_decision(decision)
            except Exception as exc:  # noqa: BLE001 - a user callback must not break the agent
                logger.error("memguard: on_decision callback failed (%s)", type(exc).__name__)

    # ------------------------------------------------------------------ drivers

    def _drive_blocking(self, steps: Steps, policy: Policy | None) -> Decision:
        reply: Any = None
        try:
            while True:
                request = steps.send(reply)
                if isinstance(request, ProbeRequest):
                    reply = self._probe_blocking(request, policy)
                else:
                    reply = self._score_blocking(request)
        except StopIteration as stop:
            return stop.value

    async def _drive_async(self, steps: Steps, policy: Policy | None) -> Decision:
        reply: Any = None
        try:
            while True:
                request = steps.send(reply)
                if isinstance(request, ProbeRequest):
                    reply = await self._probe_async(request, policy)
                else:
                    reply = await self._score_async(request)
        except StopIteration as stop:
            return stop.value

    def _probe_blocking(self, request: ProbeRequest, policy: Policy | None) -> list[Any]:
        policy = self._require_policy(policy)
        if len(request.contexts) == 1:
            return [self._probe_one_blocking(policy, request.contexts[0])]
        results: list[Any] = [None] * len(request.contexts)

        def run(i: int) -> None:
            results[i] = self._probe_one_blocking(policy, request.contexts[i])

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(request.contexts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    def _probe_one_blocking(self, policy: Policy, context: list[Any]) -> Any:
        try:
            return call_blocking(policy, list(context), timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001
            return Failure(exc)

    async def _probe_async(self, request: ProbeRequest, policy: Policy | None) -> list[Any]:
        policy = self._require_policy(policy)

        async def one(context: list[Any]) -> Any:
            try:
                return await call_async(policy, list(context), timeout=self.timeout)
            except Exception as exc:  # noqa: BLE001
                return Failure(exc)

        return list(await asyncio.gather(*(one(c) for c in request.contexts)))

    def _score_blocking(self, request: ScoreRequest) -> list[Score] | Failure:
        try:
            return call_blocking(self.scorer.score, request.prompts, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - MemoryError and CUDA OOM included: reported, not raised
            return Failure(exc)

    async def _score_async(self, request: ScoreRequest) -> list[Score] | Failure:
        fn = getattr(self.scorer, "ascore", None) or self.scorer.score
        try:
            return await call_async(fn, request.prompts, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001
            return Failure(exc)

    @staticmethod
    def _require_policy(policy: Policy | None) -> Policy:
        if policy is None:
            raise ValueError(
                "this review needs the agent: pass policy=... (a callable messages -> next response) "
                "or give the event recorded_response and proposed_response"
            )
        return policy

    # ------------------------------------------------------------------ policy, used by Review

    def step_of(self, event: CompactionEvent) -> int:
        """The event's step, or the number of assistant turns in `before`."""
        if event.step is not None:
            return event.step
        return sum(1 for m in to_messages(event.before) if m.role == "assistant")

    def count_tokens(self, messages: list[Message]) -> int:
        """Context size for the hard budget: the user's counter, the RM's tokenizer, or chars/4."""
        if self._token_counter is not None:
            return int(self._token_counter(messages))
        text = render_turns(messages)
        counter = getattr(self.scorer, "count_tokens", None)
        if callable(counter):
            return int(counter(text))
        return len(text) // 4  # no tokenizer at hand: ~4 characters per token

    def band_for(self, p_harmful: float) -> str:
        return band_of(p_harmful, self.band, self.threshold)

    def acceptable(self, p_harmful: float) -> bool:
        """Below the threshold, and not "uncertain" while uncertain scores count as harmful."""
        if p_harmful >= self.threshold:
            return False
        return not (self.uncertain == "harmful" and self.band_for(p_harmful) == "uncertain")

    def cooldown_left(self, conversation_id: str, step: int) -> int:
        """Steps left before this conversation is reviewed again after a veto (0: review now)."""
        if self.hard_budget is not None or self.cooldown == 0:
            return 0
        with self._state_lock:
            last = self._vetoed_at.get(conversation_id)
        if last is None or step < last:
            return 0
        return max(0, self.cooldown - (step - last))

    def record_veto(self, conversation_id: str, step: int) -> None:
        with self._state_lock:
            self._vetoed_at[conversation_id] = step

    def log_failure(self, reason: str) -> None:
        logger.warning("memguard: %s (on_error=%s)", reason, self.on_error)


def guarded(
    *,
    policy: Policy | None = None,
    guard: Guard | None = None,
    scorer: Scorer | None = None,
    strategy: str | None = None,
    on_decision: Callable[[Decision], Any] | None = None,
    **guard_options: Any,
) -> Callable[..., Any]:
    """Module-level decorator: guard a compaction function with an existing or a new `Guard`."""
    if guard is None:
        if scorer is None:
            raise ValueError("guarded(...) needs guard=Guard(...) or scorer=... to build one")
        guard = Guard(scorer, **guard_options)
    elif guard_options:
        raise ValueError(f"guard options {sorted(guard_options)} given beside an existing guard")
    return guard.compaction(policy=policy, strategy=strategy, on_decision=on_decision)

