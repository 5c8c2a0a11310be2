"""One review of one proposed compaction, written once as a sans-IO state machine.

`Review.steps()` is a generator that *asks* for everything outside itself and receives the
answers (or a `Failure` when a call raised or timed out):

- `StrategyRequest`: apply a fallback strategy to the caller's messages;
- `TokenCountRequest`: the size of a candidate context, for a hard budget;
- `ProbeRequest`: the agent's next response on each context;
- `ScoreRequest`: P(HARMFUL) of each rendered prompt.

It performs no I/O, holds no reference to the guard and calls nothing back on it: its inputs are
the frozen `GuardSettings`, the event and plain values. Whether a step is reviewed at all (the
cooldown after a veto) is not its question: the gate (`memguard.gate`) answers it before the
caller's compaction even runs. `Guard.review` answers the requests with
blocking calls and `Guard.areview` with awaits (blocking work off the event loop), so both reach
the same decision by construction, like an httpx auth flow driven by either client.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from memguard._privacy import WITHHELD, exception_text, quotes
from memguard.actions import same_action
from memguard.events import Band, CandidateReport, CompactionEvent, Decision, Timings, Verdict
from memguard.messages import Message, detect_format, restore_messages, to_messages
from memguard.protocol import perturbation_tag, render_action, render_prompt, render_turns
from memguard.rails import check_candidate
from memguard.scoring.base import ScorerIdentity
from memguard.settings import GuardSettings
from memguard.strategies import Strategy

__all__ = [
    "Failure",
    "ProbeRequest",
    "Review",
    "ScoreRequest",
    "ScorerBacklog",
    "StrategyRequest",
    "TokenCountRequest",
    "describe_exception",
    "needs_agent",
    "step_of",
]

Steps = Generator[Any, Any, Decision]


@dataclass
class StrategyRequest:
    """Ask for `strategy(messages)`; `messages` are the caller's own, the answer is in that type."""

    strategy: Strategy
    messages: list[Any]


@dataclass
class TokenCountRequest:
    """Ask for the token count of a context (for the hard budget)."""

    messages: list[Message]


@dataclass
class ProbeRequest:
    """Ask the agent for its next response on each context (results in the same order)."""

    contexts: list[list[Any]]


@dataclass
class ScoreRequest:
    """Ask the scorer for P(HARMFUL) of each rendered prompt."""

    prompts: list[str]


class Failure:
    """A call that raised or timed out: carried as a value, handled by `on_error`."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def describe_exception(exc: BaseException, conversation: Callable[[], str] | None = None,
                       quoted: list[str] | None = None) -> str:
    """Exception type and a bounded first line, withheld when it quotes the conversation.

    The text used is appended to `quoted` (a redacted record fingerprints it).
    """
    text = exception_text(exc)
    if text and conversation is not None and quotes(text, conversation()):
        text = WITHHELD
    if text and text != WITHHELD and quoted is not None:
        quoted.append(text)
    if isinstance(exc, TimeoutError):
        return f"timeout ({text})" if text else "timeout"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def step_of(event: CompactionEvent, before: list[Message] | None = None) -> int:
    """The event's step, or the number of assistant turns in `before`."""
    if event.step is not None:
        return event.step
    messages = before if before is not None else to_messages(event.before)
    return sum(1 for m in messages if m.role == "assistant")


@dataclass
class _Candidate:
    strategy: str
    messages: list[Message]
    original: list[Any] | None  # the caller's own objects (the proposal, or a fallback's output)
    report: CandidateReport
    proposed: bool = False
    response: Any = None
    score_failed: bool = False  # its scoring failed (an error, NaN, a timeout): on_error decides


class Review:
    """The state of one review: the event, its candidates, the reasons and the timings.

    `must_reduce`: the framework must shrink the context now, so the review never vetoes: it
    commits, falls back, or forces the lowest-risk usable candidate, whatever `on_error` says.
    `step`: the step when the caller already knows it (the gate's); otherwise the event's, or
    the number of assistant turns in `before`.
    """

    def __init__(self, settings: GuardSettings, event: CompactionEvent, *, conversation_id: str,
                 audit: bool = False, fallbacks: tuple[Strategy, ...] = (), hard_budget: int | None = None,
                 must_reduce: bool = False, identity: ScorerIdentity | None = None,
                 step: int | None = None) -> None:
        self.settings = settings
        self.event = event
        self.conversation_id = conversation_id
        self.audit = audit
        self.fallbacks = () if audit else fallbacks
        self.hard_budget = hard_budget
        self.must_reduce = must_reduce and not audit
        self.identity = identity
        self.started = time.perf_counter()
        self.timings = Timings()
        self.fmt = detect_format(event.before)
        self.before = to_messages(event.before)
        self.proposed = to_messages(event.candidate)
        self.step = event.step if event.step is not None else step if step is not None else step_of(event, self.before)
        self.reasons: list[str] = []
        self.candidates: list[_Candidate] = []
        self.recorded_response: Any = None
        self.recorded_action: str | None = None
        self.exception_texts: list[str] = []
        self._corpus: str | None = None

    # ------------------------------------------------------------------ the decision

    def steps(self) -> Steps:
        settings = self.settings
        first = yield from self.make(self.event.strategy, self.proposed, list(self.event.candidate), proposed=True)
        self.candidates.append(first)
        batch = [first]
        parallel = settings.search == "parallel"
        if parallel:
            for fallback in self.fallbacks:
                batch.append((yield from self.apply(fallback)))
            self.candidates[:] = batch

        # The agent's next step under the full context, probed together with the first batch.
        recorded = yield from self.probe_batch(batch)
        if isinstance(recorded, Failure):
            reason = f"agent probe on the full context failed: {self.describe(recorded.exc)}"
            return self.on_failure(first, reason)
        self.recorded_response = recorded
        self.recorded_action = render_action(recorded)
        yield from self.assess(batch)

        if self.audit:
            if first.score_failed or isinstance(first.response, Failure):
                return self.on_failure(first, first.report.error or self.describe(first.response.exc))
            would = "would commit" if first.report.acceptable else "would not commit: " + _why_not(first)
            self.reasons.append("enforce " + would)
            return self.finish(Verdict.AUDIT, first, response=None)

        # Walk the candidates in order: the first acceptable one wins, the first whose judgment
        # failed goes to on_error. Both searches take this same walk (parallel has every
        # candidate judged already; sequential judges one at a time), so they pick the same winner.
        pending = [] if parallel else list(self.fallbacks)
        order = list(batch)
        index = 0
        while index < len(order) or pending:
            if index == len(order):
                cand = yield from self.apply(pending.pop(0))
                self.candidates.append(cand)
                if cand.report.rejected is None:
                    probe_t = time.perf_counter()
                    (cand.response,) = yield ProbeRequest([self.context_of(cand)])
                    self.timings.probe += time.perf_counter() - probe_t
                yield from self.assess([cand])
                order.append(cand)
            cand = order[index]
            index += 1
            if cand.proposed and isinstance(cand.response, Failure):  # the proposal cannot be judged
                return self.on_failure(cand, cand.report.error or self.describe(cand.response.exc))
            if cand.score_failed:
                return self.on_failure(cand, cand.report.error or "scoring failed")
            if cand.report.acceptable:
                return self.won(first, cand)
            if cand is first:
                self.reasons.append(f"proposed {first.strategy}: {_why_not(first)}")

        for cand in self.candidates[1:]:
            self.reasons.append(f"fallback {cand.strategy}: {_why_not(cand)}")
        if self.hard_budget is not None or self.must_reduce:
            forced = _lowest_risk(self.candidates, need_fit=self.hard_budget is not None)
            if forced is not None:
                self.reasons.append(
                    f"hard budget of {self.hard_budget} tokens: committing the lowest-risk candidate that fits"
                    if self.hard_budget is not None and forced.report.fits_budget
                    else "must reduce: no veto allowed, committing the lowest-risk candidate"
                )
                return self.finish(Verdict.FORCED, forced, response=_usable_response(forced))
            if self.must_reduce:
                return self.forced_anyway("no candidate could be judged usable")
            self.reasons.append("hard budget: no candidate passed the rails and fit; nothing could be committed")
        return self.finish(Verdict.VETO, None, response=recorded)

    # ------------------------------------------------------------------ candidates

    def make(
        self, strategy: str, messages: list[Message], original: list[Any] | None, *, proposed: bool = False
    ) -> Generator[Any, Any, _Candidate]:
        """A candidate with its report: the rails' verdict and, under a hard budget, its size."""
        event = self.event
        tag = event.perturbation if (event.perturbation and proposed) else perturbation_tag(strategy)
        report = CandidateReport(strategy=strategy, perturbation=tag, n_messages=len(messages))
        rejected = check_candidate(self.before, messages)
        if not rejected and not proposed and _same_messages(messages, self.before):
            rejected = "no-op: the strategy left the context unchanged"
        report.rejected = rejected or None
        if self.hard_budget is not None:
            counted = yield TokenCountRequest(messages)
            report.context_tokens = counted if isinstance(counted, int) else None
            report.fits_budget = report.context_tokens is not None and report.context_tokens <= self.hard_budget
        return _Candidate(strategy, messages, original, report, proposed=proposed)

    def apply(self, fallback: Strategy) -> Generator[Any, Any, _Candidate]:
        """A fallback applied to the caller's own `before` (the caller's type in and out)."""
        result = yield StrategyRequest(fallback, list(self.event.before))
        try:
            if isinstance(result, Failure):
                raise result.exc
            original = list(result)
            messages = to_messages(original)
        except Exception as exc:  # noqa: BLE001 - a broken fallback is skipped, not fatal
            report = CandidateReport(
                strategy=fallback.name,
                perturbation=perturbation_tag(fallback.name),
                rejected=f"strategy failed: {self.describe(exc)}",
            )
            return _Candidate(fallback.name, [], None, report)
        return (yield from self.make(fallback.name, messages, original))

    def context_of(self, cand: _Candidate) -> list[Any]:
        """The candidate's context in the caller's type, for probing and for the Decision."""
        if cand.original is not None:
            return list(cand.original)
        return restore_messages(cand.messages, self.fmt)

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
            if cand.proposed and event.proposed_response is not None:
                cand.response = event.proposed_response
            else:
                contexts.append(self.context_of(cand))
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

    def assess(self, batch: list[_Candidate]) -> Generator[Any, Any, None]:
        """Fill the reports of `batch` (probes done): identical actions, then the scores.

        A candidate whose scoring fails is marked (`score_failed`) for the walk to hand to
        `on_error`. When one call for several candidates fails as a whole (not a timeout or a
        backlog, which say nothing about a prompt), the candidates are scored one by one, in
        order, until one decides: every candidate ends as the sequential search would see it.
        """
        to_score: list[tuple[_Candidate, str]] = []
        render_t = time.perf_counter()
        for cand in batch:
            prompt = self.prepare(cand)
            if prompt is not None:
                to_score.append((cand, prompt))
        self.timings.render += time.perf_counter() - render_t
        if not to_score:
            return
        failure = yield from self.score(to_score)
        if failure is None:
            return
        exc, reason = failure
        if len(to_score) == 1 or isinstance(exc, TimeoutError) or _is_backlog(exc):
            for cand, _ in to_score:
                self.fail(cand, reason)
            return
        prompts = {id(c): p for c, p in to_score}
        for cand in batch:  # the walk's order: stop where it will stop
            if cand.report.acceptable or (cand.proposed and isinstance(cand.response, Failure)):
                return
            if id(cand) not in prompts:
                continue
            single = yield from self.score([(cand, prompts[id(cand)])])
            if single is not None:
                self.fail(cand, single[1])
                return
            if cand.report.acceptable:
                return

    def prepare(self, cand: _Candidate) -> str | None:
        """The candidate's prompt, or None when it needs no score (rejected, failed, identical)."""
        report = cand.report
        if report.rejected is not None:
            return None
        if isinstance(cand.response, Failure):
            report.error = f"agent probe failed: {self.describe(cand.response.exc)}"
            return None
        report.proposed_action = render_action(cand.response)
        # Identical next actions, compared as messages (content and tool calls in full, ids
        # aside): SAFE by the label's definition. Two empty actions are not "the same action".
        if self.settings.identical_is_safe and same_action(cand.response, self.recorded_response):
            report.identical, report.band = True, "safe"
            report.acceptable = report.fits_budget is not False
            return None
        return render_prompt(
            self.before,
            step=self.step,
            recorded=self.recorded_action,
            proposed=report.proposed_action,
            perturbation=report.perturbation,
        )

    def score(self, to_score: list[tuple[_Candidate, str]]) -> Generator[Any, Any, tuple[BaseException, str] | None]:
        """Ask for the scores of `to_score` and fill their reports; the call's failure, if it failed."""
        settings = self.settings
        score_t = time.perf_counter()
        scores = yield ScoreRequest([prompt for _, prompt in to_score])
        self.timings.score += time.perf_counter() - score_t
        if isinstance(scores, Failure):
            return scores.exc, self.describe(scores.exc)
        if not isinstance(scores, list) or len(scores) != len(to_score):
            return ValueError("wrong number of scores"), "scorer returned the wrong number of scores"
        for (cand, _), score in zip(to_score, scores, strict=True):
            p = float(getattr(score, "p_harmful", float("nan")))
            report = cand.report
            if not math.isfinite(p) or not 0.0 <= p <= 1.0:
                self.fail(cand, f"non-finite or out-of-range P(HARMFUL): {p!r}")
                continue
            report.p_harmful = p
            report.band = _band(settings.band_of(p))
            report.prompt_tokens = getattr(score, "n_tokens", None)
            report.truncated_tokens = int(getattr(score, "n_truncated", 0) or 0)
            report.acceptable = settings.acceptable(p) and report.fits_budget is not False
        return None

    @staticmethod
    def fail(cand: _Candidate, reason: str) -> None:
        cand.report.error = reason
        cand.report.acceptable = False
        cand.score_failed = True

    # ------------------------------------------------------------------ outcomes

    def won(self, first: _Candidate, cand: _Candidate) -> Decision:
        how = "identical next action" if cand.report.identical else f"P(HARMFUL)={cand.report.p_harmful:.3f}"
        if cand is first:
            self.reasons.append(f"committed: {how} (threshold {self.settings.threshold:g})")
            return self.finish(Verdict.COMMIT, cand, response=cand.response)
        self.reasons.append(f"fallback {cand.strategy} accepted: {how}")
        return self.finish(Verdict.FALLBACK, cand, response=cand.response)

    def on_failure(self, cand: _Candidate, reason: str) -> Decision:
        """The `on_error` policy: open commits the candidate, closed keeps the full context.

        Under a hard budget or a must-reduce review a usable candidate is committed either way,
        and a must-reduce review never vetoes.
        """
        on_error = self.settings.on_error
        usable = cand.report.rejected is None and cand.report.fits_budget is not False
        response = _usable_response(cand)
        if self.audit:
            self.reasons.append(f"error: {reason}")
            return self.finish(Verdict.AUDIT, cand, response=None, error=reason)
        if (on_error == "open" or self.hard_budget is not None or self.must_reduce) and usable:
            self.reasons.append(
                f"error, failing open ({reason})"
                if on_error == "open"
                else f"error under a hard budget, committing ({reason})"
                if self.hard_budget is not None
                else f"error, and the context must shrink: committing ({reason})"
            )
            if on_error == "closed":
                verdict = Verdict.FORCED
            else:
                verdict = Verdict.COMMIT if cand.proposed else Verdict.FALLBACK
            return self.finish(verdict, cand, response=response, error=reason)
        if self.must_reduce:
            return self.forced_anyway(reason, error=reason)
        self.reasons.append(
            f"error, failing closed ({reason})"
            if on_error == "closed"
            else f"error, and the candidate is unusable ({reason})"
        )
        return self.finish(Verdict.VETO, None, response=None, error=reason)

    def forced_anyway(self, why: str, *, error: str | None = None) -> Decision:
        """Must reduce and nothing was judged usable: the lowest-risk candidate the rails pass, else the proposal."""
        passing = [c for c in self.candidates if c.report.rejected is None and c.original is not None]
        chosen = _lowest_risk(passing, need_fit=False, need_score=False) or self.candidates[0]
        self.reasons.append(f"must reduce: no veto allowed ({why}); committing {chosen.strategy}")
        return self.finish(Verdict.FORCED, chosen, response=_usable_response(chosen), error=error)

    def finish(
        self, verdict: Verdict, chosen: _Candidate | None, *, response: Any, error: str | None = None
    ) -> Decision:
        event = self.event
        self.timings.total = time.perf_counter() - self.started
        if self.audit:
            verdict, messages = Verdict.AUDIT, list(event.candidate)
        elif chosen is None:
            messages = list(event.before)
        else:
            messages = self.context_of(chosen)
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
            scorer=self.identity,
            step=self.step,
            conversation_id=self.conversation_id,
            event_id=event.event_id,
        ).quoting(self.exception_texts)

    # ------------------------------------------------------------------ privacy

    def describe(self, exc: BaseException) -> str:
        return describe_exception(exc, self.conversation, self.exception_texts)

    def conversation(self) -> str:
        """Every text of this event, rendered once and only when an error message must be vetted."""
        if self._corpus is None:
            actions = [self.recorded_action or "", *(c.report.proposed_action or "" for c in self.candidates)]
            self._corpus = "\n".join([render_turns(self.before), render_turns(self.proposed), *actions])
        return self._corpus


def _band(label: str) -> Band:
    return "safe" if label == "safe" else "harmful" if label == "harmful" else "uncertain"


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
    return len(a) == len(b) and all(x.model_dump() == y.model_dump() for x, y in zip(a, b, strict=True))


def _lowest_risk(candidates: list[_Candidate], *, need_fit: bool = True, need_score: bool = True) -> _Candidate | None:
    """The usable candidate with the lowest P(HARMFUL) (identical actions count as 0; ties: first).

    Usable: passed the rails, (`need_fit`) fits the hard budget, and (`need_score`) was judged
    without an error. Unjudged candidates rank after every judged one.
    """
    usable = [
        c
        for c in candidates
        if c.report.rejected is None
        and (c.report.fits_budget or not need_fit)
        and (not need_score or (c.report.error is None and (c.report.p_harmful is not None or c.report.identical)))
    ]
    if not usable:
        return None

    def risk(cand: _Candidate) -> float:
        if cand.report.identical:
            return 0.0
        return cand.report.p_harmful if cand.report.p_harmful is not None else 2.0

    return min(usable, key=risk)


def _usable_response(cand: _Candidate) -> Any:
    return None if isinstance(cand.response, Failure) else cand.response


class ScorerBacklog(RuntimeError):
    """The guard refused a scorer call: too many timed-out calls still hold the model."""


def _is_backlog(exc: BaseException) -> bool:
    return isinstance(exc, ScorerBacklog)


def needs_agent(event: CompactionEvent, fallbacks: tuple[Strategy, ...], *, audit: bool) -> bool:
    """Whether reviewing `event` may have to call the agent (decided before any scoring)."""
    if event.recorded_response is None or event.proposed_response is None:
        return True
    return bool(fallbacks) and not audit
