"""The guard: review a proposed compaction, probe the agent, score, decide, fall back, audit.

The decision logic is written once, as a generator that *asks* for agent probes and RM scores
and receives their results (a sans-IO core). `Guard.review` drives it with blocking calls and
`Guard.areview` with awaits, so sync and async callers get the same decisions by construction.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from memguard._concurrency import call_async, call_blocking
from memguard._privacy import WITHHELD, exception_text, quotes
from memguard.audit import AuditWorker, Sink, emit_all
from memguard.events import CandidateReport, CompactionEvent, Decision, Timings, Verdict
from memguard.messages import Message, detect_format, restore_messages, to_messages
from memguard.protocol import coverage_band, perturbation_tag, render_action, render_prompt, render_turns
from memguard.rails import check_candidate
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


# ----------------------------------------------------------------------------- sans-IO requests


@dataclass
class _Probe:
    """Ask the agent for its next response on each context (None where a response is known)."""

    contexts: list[list[Any]]
    results: list[Any] = field(default_factory=list)


@dataclass
class _Score:
    prompts: list[str]


class _Failure:
    """A probe or score that raised or timed out: carried as a value, handled by the policy."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _describe(exc: BaseException, conversation: Callable[[], str] | None = None) -> str:
    """Exception type and a bounded first line, withheld when it quotes the conversation."""
    text = exception_text(exc)
    if text and conversation is not None and quotes(text, conversation()):
        text = WITHHELD
    if isinstance(exc, TimeoutError):
        return f"timeout ({text})" if text else "timeout"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class _Candidate:
    strategy: str
    messages: list[Message]
    original: list[Any] | None  # the caller's own objects, when this is the proposed candidate
    report: CandidateReport
    response: Any = None


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
        steps = self._review_steps(event, audit=False, fallbacks=self._chain(fallbacks))
        decision = self._drive_blocking(steps, policy)
        self._publish(decision)
        return decision

    async def areview(self, event: CompactionEvent, policy: Policy | None = None, *,
                      fallbacks: Sequence[Strategy | Callable[..., Any]] | None = None) -> Decision:
        """Decide on `event` without blocking the event loop (same decisions as `review`)."""
        if self.mode == "audit":
            return self._enqueue_audit(event, policy)
        steps = self._review_steps(event, audit=False, fallbacks=self._chain(fallbacks))
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
            step=self._step_of(event),
            conversation_id=event.conversation_id,
            event_id=event.event_id,
            scorer=self.identity,
            pending=True,
        )

        def job() -> None:
            decision = self._drive_blocking(self._review_steps(event, audit=True, fallbacks=()), policy)
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

    def _drive_blocking(self, steps: Generator[Any, Any, Decision], policy: Policy | None) -> Decision:
        reply: Any = None
        try:
            while True:
                request = steps.send(reply)
                if isinstance(request, _Probe):
                    reply = self._probe_blocking(request, policy)
                else:
                    reply = self._score_blocking(request)
        except StopIteration as stop:
            return stop.value

    async def _drive_async(self, steps: Generator[Any, Any, Decision], policy: Policy | None) -> Decision:
        reply: Any = None
        try:
            while True:
                request = steps.send(reply)
                if isinstance(request, _Probe):
                    reply = await self._probe_async(request, policy)
                else:
                    reply = await self._score_async(request)
        except StopIteration as stop:
            return stop.value

    def _probe_blocking(self, request: _Probe, policy: Policy | None) -> list[Any]:
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
            return _Failure(exc)

    async def _probe_async(self, request: _Probe, policy: Policy | None) -> list[Any]:
        import asyncio

        policy = self._require_policy(policy)

        async def one(context: list[Any]) -> Any:
            try:
                return await call_async(policy, list(context), timeout=self.timeout)
            except Exception as exc:  # noqa: BLE001
                return _Failure(exc)

        return list(await asyncio.gather(*(one(c) for c in request.contexts)))

    def _score_blocking(self, request: _Score) -> list[Score] | _Failure:
        try:
            return call_blocking(self.scorer.score, request.prompts, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - MemoryError and CUDA OOM included: reported, not raised
            return _Failure(exc)

    async def _score_async(self, request: _Score) -> list[Score] | _Failure:
        fn = getattr(self.scorer, "ascore", None) or self.scorer.score
        try:
            return await call_async(fn, request.prompts, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001
            return _Failure(exc)

    @staticmethod
    def _require_policy(policy: Policy | None) -> Policy:
        if policy is None:
            raise ValueError(
                "this review needs the agent: pass policy=... (a callable messages -> next response) "
                "or give the event recorded_response and proposed_response"
            )
        return policy

    # ------------------------------------------------------------------ the decision logic

    def _step_of(self, event: CompactionEvent) -> int:
        if event.step is not None:
            return event.step
        return sum(1 for m in to_messages(event.before) if m.role == "assistant")

    def _count_tokens(self, messages: list[Message]) -> int:
        if self._token_counter is not None:
            return int(self._token_counter(messages))
        text = render_turns(messages)
        counter = getattr(self.scorer, "count_tokens", None)
        if callable(counter):
            return int(counter(text))
        return len(text) // 4  # no tokenizer at hand: ~4 characters per token

    def _acceptable(self, p: float) -> bool:
        if p >= self.threshold:
            return False
        return not (self.uncertain == "harmful" and band_of(p, self.band, self.threshold) == "uncertain")

    def _cooling_down(self, event: CompactionEvent, step: int) -> int:
        """Steps left before this conversation is reviewed again after a veto (0: review now)."""
        if self.hard_budget is not None or self.cooldown == 0:
            return 0
        with self._state_lock:
            last = self._vetoed_at.get(event.conversation_id)
        if last is None or step < last:
            return 0
        left = self.cooldown - (step - last)
        return max(0, left)

    def _review_steps(self, event: CompactionEvent, *, audit: bool,
                      fallbacks: tuple[Strategy, ...]) -> Generator[Any, Any, Decision]:
        started = time.perf_counter()
        timings = Timings()
        fmt = detect_format(event.before)
        before = to_messages(event.before)
        proposed = to_messages(event.candidate)
        step = self._step_of(event)
        reasons: list[str] = []
        corpus: list[str] = []

        def conversation() -> str:
            """Every text of this event, rendered once and only when an error must be vetted."""
            if not corpus:
                actions = [recorded_action or "", *(c.report.proposed_action or "" for c in candidates)]
                corpus.append("\n".join([render_turns(before), render_turns(proposed), *actions]))
            return corpus[0]

        def describe(failure: _Failure) -> str:
            return _describe(failure.exc, conversation)

        def finish(verdict: Verdict, chosen: _Candidate | None, *, response: Any, error: str | None = None) -> Decision:
            timings.total = time.perf_counter() - started
            if chosen is None:
                messages = list(event.before)
            elif chosen.original is not None:
                messages = list(chosen.original)
            else:
                messages = restore_messages(chosen.messages, fmt)
            if audit:
                verdict_out, messages = Verdict.AUDIT, list(event.candidate)
            else:
                verdict_out = verdict
            if verdict is Verdict.VETO and not audit and not cooling:
                with self._state_lock:
                    self._vetoed_at[event.conversation_id] = step
            return Decision(
                verdict=verdict_out,
                mode="audit" if audit else "enforce",
                messages=messages,
                strategy=None if chosen is None else chosen.strategy,
                proposed_strategy=event.strategy,
                candidates=[c.report for c in candidates],
                response=None if audit else response,
                recorded_action=recorded_action,
                reasons=reasons,
                error=error,
                timings=timings,
                truncated_tokens=max((c.report.truncated_tokens for c in candidates), default=0),
                scorer=self.identity,
                step=step,
                conversation_id=event.conversation_id,
                event_id=event.event_id,
            )

        candidates: list[_Candidate] = []
        recorded_action: str | None = None

        cooling = False
        if not audit:
            left = self._cooling_down(event, step)
            if left:
                cooling = True
                reasons.append(f"cooldown after a veto: not reviewed for {left} more step(s)")
                return finish(Verdict.VETO, None, response=None)

        def make(strategy: str, messages: list[Message], original: list[Any] | None) -> _Candidate:
            tag = event.perturbation if (event.perturbation and original is not None) else perturbation_tag(strategy)
            report = CandidateReport(strategy=strategy, perturbation=tag, n_messages=len(messages))
            rejected = check_candidate(before, messages)
            if not rejected and original is None and _same_messages(messages, before):
                rejected = "no-op: the strategy left the context unchanged"
            if rejected:
                report.rejected = rejected
            if self.hard_budget is not None:
                report.context_tokens = self._count_tokens(messages)
                report.fits_budget = report.context_tokens <= self.hard_budget
            return _Candidate(strategy, messages, original, report)

        def pending_fallbacks() -> Generator[_Candidate, None, None]:
            if audit:
                return
            for fallback in fallbacks:
                try:
                    messages = to_messages(fallback(before))
                except Exception as exc:  # noqa: BLE001 - a broken fallback is skipped, not fatal
                    cand = _Candidate(fallback.name, [], None, CandidateReport(
                        strategy=fallback.name, perturbation=perturbation_tag(fallback.name)))
                    cand.report.rejected = f"strategy failed: {_describe(exc, conversation)}"
                    yield cand
                    continue
                yield make(fallback.name, messages, None)

        first = make(event.strategy, proposed, list(event.candidate))
        candidates.append(first)
        queue: list[_Candidate] = [first]
        if self.search == "parallel":
            queue.extend(pending_fallbacks())
            candidates[:] = queue
        fallback_iter = pending_fallbacks() if self.search == "sequential" else iter(())

        # -- the recorded action: the agent's next step under the full context
        recorded_response = event.recorded_response
        probe_t = time.perf_counter()
        need = [c for c in queue if c.report.rejected is None]
        wanted: list[list[Any]] = []
        if recorded_response is None:
            wanted.append(list(event.before))
        for cand in need:
            if cand is first and event.proposed_response is not None:
                cand.response = event.proposed_response
            else:
                wanted.append(cand.original if cand.original is not None else restore_messages(cand.messages, fmt))
        if wanted:
            results = yield _Probe(wanted)
            results = list(results)
            if recorded_response is None:
                recorded_response = results.pop(0)
            for cand in need:
                if cand.response is None:
                    cand.response = results.pop(0)
        timings.probe += time.perf_counter() - probe_t

        if isinstance(recorded_response, _Failure):
            return self._on_failure(finish, first, f"agent probe on the full context failed: {describe(recorded_response)}", reasons, audit)
        recorded_action = render_action(recorded_response)

        def assess(batch: list[_Candidate]) -> Generator[Any, Any, str | None]:
            """Fill reports for `batch` (probes already done); returns an error reason if scoring failed."""
            to_score: list[tuple[_Candidate, str]] = []
            render_t = time.perf_counter()
            for cand in batch:
                report = cand.report
                if report.rejected is not None:
                    continue
                if isinstance(cand.response, _Failure):
                    report.error = f"agent probe failed: {describe(cand.response)}"
                    continue
                report.proposed_action = render_action(cand.response)
                if self.identical_is_safe and report.proposed_action == recorded_action:
                    report.identical, report.band = True, "safe"
                    report.acceptable = report.fits_budget is not False
                    continue
                prompt = render_prompt(before, step=step, recorded=recorded_action,
                                       proposed=report.proposed_action, perturbation=report.perturbation)
                to_score.append((cand, prompt))
            timings.render += time.perf_counter() - render_t
            if not to_score:
                return None
            score_t = time.perf_counter()
            scores = yield _Score([p for _, p in to_score])
            timings.score += time.perf_counter() - score_t
            if isinstance(scores, _Failure):
                reason = describe(scores)
                for cand, _ in to_score:
                    cand.report.error = reason
                return reason
            if not isinstance(scores, list) or len(scores) != len(to_score):
                reason = "scorer returned the wrong number of scores"
                for cand, _ in to_score:
                    cand.report.error = reason
                return reason
            for (cand, _), score in zip(to_score, scores):
                p = float(getattr(score, "p_harmful", float("nan")))
                if not math.isfinite(p) or not 0.0 <= p <= 1.0:
                    cand.report.error = f"non-finite or out-of-range P(HARMFUL): {p!r}"
                    return cand.report.error
                report = cand.report
                report.p_harmful = p
                report.band = band_of(p, self.band, self.threshold)
                report.prompt_tokens = getattr(score, "n_tokens", None)
                report.truncated_tokens = int(getattr(score, "n_truncated", 0) or 0)
                report.acceptable = self._acceptable(p) and report.fits_budget is not False
            return None

        # -- assess the proposed candidate (and, in parallel search, all fallbacks at once)
        error = yield from assess(queue)
        if error is not None:
            return self._on_failure(finish, first, error, reasons, audit)
        if isinstance(first.response, _Failure):  # the proposal cannot be judged: on_error decides
            return self._on_failure(finish, first, first.report.error or describe(first.response), reasons, audit)
        if audit:
            winner = first if first.report.acceptable else None
            reasons.append("enforce would commit" if winner else "enforce would not commit: " + _why_not(first))
            return finish(Verdict.AUDIT, first, response=None)

        for cand in queue:
            if cand.report.acceptable:
                return self._won(finish, first, cand, reasons)
            if cand is first:
                reasons.append(f"proposed {first.strategy}: {_why_not(first)}")

        # -- sequential search: one fallback at a time, stop at the first acceptable one
        for cand in fallback_iter:
            candidates.append(cand)
            if cand.report.rejected is None:
                probe_t = time.perf_counter()
                (cand.response,) = yield _Probe([restore_messages(cand.messages, fmt)])
                timings.probe += time.perf_counter() - probe_t
            error = yield from assess([cand])
            if error is not None:
                return self._on_failure(finish, cand, error, reasons, audit)
            if cand.report.acceptable:
                return self._won(finish, first, cand, reasons)

        for cand in candidates[1:]:
            reasons.append(f"fallback {cand.strategy}: {_why_not(cand)}")
        if self.hard_budget is not None:
            forced = _lowest_risk(candidates)
            if forced is not None:
                reasons.append(f"hard budget of {self.hard_budget} tokens: committing the lowest-risk candidate that fits")
                return finish(Verdict.FORCED, forced, response=forced.response)
            reasons.append("hard budget: no candidate passed the rails and fit; nothing could be committed")
        return finish(Verdict.VETO, None, response=recorded_response)

    def _won(self, finish: Callable[..., Decision], first: _Candidate, cand: _Candidate, reasons: list[str]) -> Decision:
        how = "identical next action" if cand.report.identical else f"P(HARMFUL)={cand.report.p_harmful:.3f}"
        if cand is first:
            reasons.append(f"committed: {how}")
            return finish(Verdict.COMMIT, cand, response=cand.response)
        reasons.append(f"fallback {cand.strategy} accepted: {how}")
        return finish(Verdict.FALLBACK, cand, response=cand.response)

    def _on_failure(self, finish: Callable[..., Decision], cand: _Candidate, reason: str,
                    reasons: list[str], audit: bool) -> Decision:
        """The `on_error` policy: open commits the candidate, closed keeps the full context."""
        logger.warning("memguard: %s (on_error=%s)", reason, self.on_error)
        usable = cand.report.rejected is None and cand.report.fits_budget is not False
        response = cand.response if not isinstance(cand.response, _Failure) else None
        if audit:
            reasons.append(f"error: {reason}")
            return finish(Verdict.AUDIT, cand, response=None, error=reason)
        if (self.on_error == "open" or self.hard_budget is not None) and usable:
            reasons.append(f"error, failing open ({reason})" if self.on_error == "open"
                           else f"error under a hard budget, committing ({reason})")
            verdict = Verdict.FORCED if self.on_error == "closed" else (
                Verdict.COMMIT if cand.original is not None else Verdict.FALLBACK)
            return finish(verdict, cand, response=response, error=reason)
        reasons.append(f"error, failing closed ({reason})" if self.on_error == "closed"
                       else f"error, and the candidate is unusable ({reason})")
        return finish(Verdict.VETO, None, response=None, error=reason)


def _why_not(cand: _Candidate) -> str:
    report = cand.report
    if report.rejected:
        return f"rejected by rails ({report.rejected})"
    if report.error:
        return report.error
    if report.fits_budget is False:
        return "does not fit the hard budget"
    if report.p_harmful is not None:
        return f"P(HARMFUL)={report.p_harmful:.3f}, band {report.band}"
    return "not acceptable"


def _same_messages(a: list[Message], b: list[Message]) -> bool:
    return len(a) == len(b) and all(x.model_dump() == y.model_dump() for x, y in zip(a, b))


def _lowest_risk(candidates: list[_Candidate]) -> _Candidate | None:
    usable = [c for c in candidates if c.report.rejected is None and c.report.fits_budget
              and c.report.error is None and (c.report.p_harmful is not None or c.report.identical)]
    if not usable:
        return None
    return min(usable, key=lambda c: 0.0 if c.report.identical else c.report.p_harmful)  # type: ignore[arg-type,return-value]


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

