"""One review of one proposed compaction, written once as a sans-IO state machine.

`Review.steps()` is a generator that *asks* for agent probes (`ProbeRequest`) and RM scores
(`ScoreRequest`) and receives their results, or a `Failure` when a call raised or timed out. It
never performs I/O itself, so `Guard.review` can drive it with blocking calls and
`Guard.areview` with awaits, and both reach the same decision by construction.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memguard._privacy import WITHHELD, exception_text, quotes
from memguard.events import CandidateReport, CompactionEvent, Decision, Timings, Verdict
from memguard.messages import Message, detect_format, restore_messages, to_messages
from memguard.protocol import perturbation_tag, render_action, render_prompt, render_turns
from memguard.rails import check_candidate
from memguard.strategies import Strategy

if TYPE_CHECKING:
    from memguard.guard import Guard

__all__ = ["Failure", "ProbeRequest", "Review", "ScoreRequest", "describe_exception"]

Steps = Generator[Any, Any, Decision]


@dataclass
class ProbeRequest:
    """Ask the agent for its next response on each context (results in the same order)."""

    contexts: list[list[Any]]


@dataclass
class ScoreRequest:
    """Ask the scorer for P(HARMFUL) of each rendered prompt."""

    prompts: list[str]


class Failure:
    """A probe or score that raised or timed out: carried as a value, handled by `on_error`."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def describe_exception(exc: BaseException, conversation: Callable[[], str] | None = None) -> str:
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


class Review:
    """The state of one review: the event, its candidates, the reasons and the timings."""

    def __init__(self, guard: Guard, event: CompactionEvent, *, audit: bool,
                 fallbacks: tuple[Strategy, ...]) -> None:
        self.guard = guard
        self.event = event
        self.audit = audit
        self.fallbacks = () if audit else fallbacks
        self.started = time.perf_counter()
        self.timings = Timings()
        self.fmt = detect_format(event.before)
        self.before = to_messages(event.before)
        self.proposed = to_messages(event.candidate)
        self.step = guard.step_of(event)
        self.reasons: list[str] = []
        self.candidates: list[_Candidate] = []
        self.recorded_action: str | None = None
        self.cooling = False
        self._corpus: str | None = None

    # ------------------------------------------------------------------ the decision

    def steps(self) -> Steps:
        guard, event = self.guard, self.event
        if not self.audit:
            left = guard.cooldown_left(event.conversation_id, self.step)
            if left:
                self.cooling = True
                self.reasons.append(f"cooldown after a veto: not reviewed for {left} more step(s)")
                return self.finish(Verdict.VETO, None, response=None)

        first = self.make(event.strategy, self.proposed, list(event.candidate))
        self.candidates.append(first)
        batch = [first]
        if guard.search == "parallel":
            batch.extend(self.fallback_candidates())
            self.candidates[:] = batch
        later = self.fallback_candidates() if guard.search == "sequential" else iter(())

        # The agent's next step under the full context, probed together with the first batch.
        recorded = yield from self.probe_batch(batch)
        if isinstance(recorded, Failure):
            reason = f"agent probe on the full context failed: {self.describe(recorded.exc)}"
            return self.on_failure(first, reason)
        self.recorded_action = render_action(recorded)

        error = yield from self.assess(batch)
        if error is not None:
            return self.on_failure(first, error)
        if isinstance(first.response, Failure):  # the proposal cannot be judged: on_error decides
            return self.on_failure(first, first.report.error or self.describe(first.response.exc))
        if self.audit:
            verdict = "enforce would commit" if first.report.acceptable else "enforce would not commit: " + _why_not(first)
            self.reasons.append(verdict)
            return self.finish(Verdict.AUDIT, first, response=None)

        for cand in batch:
            if cand.report.acceptable:
                return self.won(first, cand)
            if cand is first:
                self.reasons.append(f"proposed {first.strategy}: {_why_not(first)}")

        # Sequential search: one fallback at a time, stopping at the first acceptable one.
        for cand in later:
            self.candidates.append(cand)
            if cand.report.rejected is None:
                probe_t = time.perf_counter()
                (cand.response,) = yield ProbeRequest([restore_messages(cand.messages, self.fmt)])
                self.timings.probe += time.perf_counter() - probe_t
            error = yield from self.assess([cand])
            if error is not None:
                return self.on_failure(cand, error)
            if cand.report.acceptable:
                return self.won(first, cand)

        for cand in self.candidates[1:]:
            self.reasons.append(f"fallback {cand.strategy}: {_why_not(cand)}")
        if guard.hard_budget is not None:
            forced = _lowest_risk(self.candidates)
            if forced is not None:
                self.reasons.append(
                    f"hard budget of {guard.hard_budget} tokens: committing the lowest-risk candidate that fits")
                return self.finish(Verdict.FORCED, forced, response=forced.response)
            self.reasons.append("hard budget: no candidate passed the rails and fit; nothing could be committed")
        return self.finish(Verdict.VETO, None, response=recorded)

    # ------------------------------------------------------------------ candidates

    def make(self, strategy: str, messages: list[Message], original: list[Any] | None) -> _Candidate:
        """A candidate with its report: the rails' verdict and, under a hard budget, its size."""
        event = self.event
        tag = event.perturbation if (event.perturbation and original is not None) else perturbation_tag(strategy)
        report = CandidateReport(strategy=strategy, perturbation=tag, n_messages=len(messages))
        rejected = check_candidate(self.before, messages)
        if not rejected and original is None and _same_messages(messages, self.before):
            rejected = "no-op: the strategy left the context unchanged"
        report.rejected = rejected or None
        if self.guard.hard_budget is not None:
            report.context_tokens = self.guard.count_tokens(messages)
            report.fits_budget = report.context_tokens <= self.guard.hard_budget
        return _Candidate(strategy, messages, original, report)

    def fallback_candidates(self) -> Generator[_Candidate, None, None]:
        """The fallbacks applied to `before`, lazily (sequential search may stop early)."""
        for fallback in self.fallbacks:
            try:
                messages = to_messages(fallback(self.before))
            except Exception as exc:  # noqa: BLE001 - a broken fallback is skipped, not fatal
                report = CandidateReport(strategy=fallback.name, perturbation=perturbation_tag(fallback.name),
                                         rejected=f"strategy failed: {self.describe(exc)}")
                yield _Candidate(fallback.name, [], None, report)
                continue
            yield self.make(fallback.name, messages, None)

    # ------------------------------------------------------------------ probing and scoring

    def probe_batch(self, batch: list[_Candidate]) -> Generator[Any, Any, Any]:
        """Probe the full context and every usable candidate of `batch` in one request.

        Responses the event already carries are used instead of probing; returns the response
        (or `Failure`) under the full context.
        """
        event = self.event
        recorded = event.recorded_response
        need = [c for c in batch if c.report.rejected is None]
        contexts: list[list[Any]] = []
        if recorded is None:
            contexts.append(list(event.before))
        for cand in need:
            if cand.original is not None and event.proposed_response is not None:
                cand.response = event.proposed_response
            else:
                contexts.append(cand.original if cand.original is not None
                                else restore_messages(cand.messages, self.fmt))
        if not contexts:
            return recorded
        probe_t = time.perf_counter()
        results = list((yield ProbeRequest(contexts)))
        self.timings.probe += time.perf_counter() - probe_t
        if recorded is None:
            recorded = results.pop(0)
        for cand in need:
            if cand.response is None:
                cand.response = results.pop(0)
        return recorded

    def assess(self, batch: list[_Candidate]) -> Generator[Any, Any, str | None]:
        """Fill the reports of `batch` (probes done); returns a reason when scoring failed."""
        guard = self.guard
        to_score: list[tuple[_Candidate, str]] = []
        render_t = time.perf_counter()
        for cand in batch:
            report = cand.report
            if report.rejected is not None:
                continue
            if isinstance(cand.response, Failure):
                report.error = f"agent probe failed: {self.describe(cand.response.exc)}"
                continue
            report.proposed_action = render_action(cand.response)
            if guard.identical_is_safe and report.proposed_action == self.recorded_action:
                report.identical, report.band = True, "safe"
                report.acceptable = report.fits_budget is not False
                continue
            prompt = render_prompt(self.before, step=self.step, recorded=self.recorded_action,
                                   proposed=report.proposed_action, perturbation=report.perturbation)
            to_score.append((cand, prompt))
        self.timings.render += time.perf_counter() - render_t
        if not to_score:
            return None
        score_t = time.perf_counter()
        scores = yield ScoreRequest([prompt for _, prompt in to_score])
        self.timings.score += time.perf_counter() - score_t
        if isinstance(scores, Failure):
            reason = self.describe(scores.exc)
        elif not isinstance(scores, list) or len(scores) != len(to_score):
            reason = "scorer returned the wrong number of scores"
        else:
            reason = None
        if reason is not None:
            for cand, _ in to_score:
                cand.report.error = reason
            return reason
        for (cand, _), score in zip(to_score, scores):
            p = float(getattr(score, "p_harmful", float("nan")))
            report = cand.report
            if not math.isfinite(p) or not 0.0 <= p <= 1.0:
                report.error = f"non-finite or out-of-range P(HARMFUL): {p!r}"
                return report.error
            report.p_harmful = p
            report.band = guard.band_for(p)
            report.prompt_tokens = getattr(score, "n_tokens", None)
            report.truncated_tokens = int(getattr(score, "n_truncated", 0) or 0)
            report.acceptable = guard.acceptable(p) and report.fits_budget is not False
        return None

    # ------------------------------------------------------------------ outcomes

    def won(self, first: _Candidate, cand: _Candidate) -> Decision:
        how = "identical next action" if cand.report.identical else f"P(HARMFUL)={cand.report.p_harmful:.3f}"
        if cand is first:
            self.reasons.append(f"committed: {how}")
            return self.finish(Verdict.COMMIT, cand, response=cand.response)
        self.reasons.append(f"fallback {cand.strategy} accepted: {how}")
        return self.finish(Verdict.FALLBACK, cand, response=cand.response)

    def on_failure(self, cand: _Candidate, reason: str) -> Decision:
        """The `on_error` policy: open commits the candidate, closed keeps the full context."""
        guard = self.guard
        guard.log_failure(reason)
        usable = cand.report.rejected is None and cand.report.fits_budget is not False
        response = None if isinstance(cand.response, Failure) else cand.response
        if self.audit:
            self.reasons.append(f"error: {reason}")
            return self.finish(Verdict.AUDIT, cand, response=None, error=reason)
        if (guard.on_error == "open" or guard.hard_budget is not None) and usable:
            self.reasons.append(f"error, failing open ({reason})" if guard.on_error == "open"
                                else f"error under a hard budget, committing ({reason})")
            if guard.on_error == "closed":
                verdict = Verdict.FORCED
            else:
                verdict = Verdict.COMMIT if cand.original is not None else Verdict.FALLBACK
            return self.finish(verdict, cand, response=response, error=reason)
        self.reasons.append(f"error, failing closed ({reason})" if guard.on_error == "closed"
                            else f"error, and the candidate is unusable ({reason})")
        return self.finish(Verdict.VETO, None, response=None, error=reason)

    def finish(self, verdict: Verdict, chosen: _Candidate | None, *, response: Any,
               error: str | None = None) -> Decision:
        event = self.event
        self.timings.total = time.perf_counter() - self.started
        if self.audit:
            verdict, messages = Verdict.AUDIT, list(event.candidate)
        elif chosen is None:
            messages = list(event.before)
        elif chosen.original is not None:
            messages = list(chosen.original)
        else:
            messages = restore_messages(chosen.messages, self.fmt)
        if verdict is Verdict.VETO and not self.cooling:
            self.guard.record_veto(event.conversation_id, self.step)
        return Decision(
            verdict=verdict,
            mode="audit" if self.audit else "enforce",
            messages=messages,
            strategy=None if chosen is None else chosen.strategy,
            proposed_strategy=event.strategy,
            candidates=[c.report for c in self.candidates],
            response=None if self.audit else response,
            recorded_action=self.recorded_action,
            reasons=self.reasons,
            error=error,
            timings=self.timings,
            truncated_tokens=max((c.report.truncated_tokens for c in self.candidates), default=0),
            scorer=self.guard.identity,
            step=self.step,
            conversation_id=event.conversation_id,
            event_id=event.event_id,
        )

    # ------------------------------------------------------------------ privacy

    def describe(self, exc: BaseException) -> str:
        return describe_exception(exc, self.conversation)

    def conversation(self) -> str:
        """Every text of this event, rendered once and only when an error message must be vetted."""
        if self._corpus is None:
            actions = [self.recorded_action or "", *(c.report.proposed_action or "" for c in self.candidates)]
            self._corpus = "\n".join([render_turns(self.before), render_turns(self.proposed), *actions])
        return self._corpus


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
