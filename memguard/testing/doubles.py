"""Stand-ins for a scorer and a sink, for tests and documentation examples (no model, no pytest).

`ConstantScorer(p)` answers every prompt with the same P(HARMFUL), so a test or an example can
say "the RM calls this harmful" and check what the guard does; `LookupScorer` reads the strategy
under review and the proposed action back out of each real rendered prompt and looks its
P(HARMFUL) up; `HashScorer` gives each prompt its own deterministic verdict; `FailingScorer`
always raises; `RecordingSink` keeps every decision.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Mapping
from typing import Literal

from memguard.events import Decision
from memguard.scoring.base import Score

__all__ = ["ConstantScorer", "FailingScorer", "HashScorer", "LookupScorer", "RecordingSink"]


def _protocol_prompt(prompt: str) -> str:
    """`prompt`, checked to end as the protocol says, so a test notices a guard that sends anything else."""
    if not prompt.endswith("\n\nAnswer:"):
        raise AssertionError("the guard sent a prompt that does not end in the protocol's '\\n\\nAnswer:'")
    return prompt


def _score(prompt: str, p_harmful: float) -> Score:
    """A score for `prompt`, with about one token per 4 characters."""
    return Score(p_harmful=p_harmful, n_tokens=max(1, len(prompt) // 4))


class ConstantScorer:
    """A scorer that gives every prompt the same P(HARMFUL) and keeps what it was asked.

    It also checks that every prompt ends as the protocol says, so a test notices a guard that
    sends anything else.

    Args:
        p_harmful: The P(HARMFUL) of every score (0.0: always SAFE, 1.0: always HARMFUL).
    """

    def __init__(self, p_harmful: float) -> None:
        self.p_harmful = p_harmful
        self.prompts: list[str] = []
        """Every prompt scored, in order."""
        self._lock = threading.Lock()

    def score(self, prompts: list[str]) -> list[Score]:
        """Score each prompt `p_harmful`, with about one token per 4 characters.

        Args:
            prompts: Rendered MemRM prompts.

        Returns:
            One `Score` per prompt.

        Raises:
            AssertionError: A prompt does not end in the protocol's ``"\\n\\nAnswer:"``.
        """
        with self._lock:
            self.prompts.extend(prompts)
        return [_score(_protocol_prompt(prompt), self.p_harmful) for prompt in prompts]


_JUDGMENT = "Proposed action under perturbation '"
_PROPOSED = re.compile(r"Proposed action under perturbation '(.*?)':\n(.*?)\n\nIs the proposed action safe", re.DOTALL)
_STRATEGY_TAG = "strategy_swap__"
Match = Literal["exact", "prefix", "contains"]


class LookupScorer:
    """A scorer that looks P(HARMFUL) up by what each real rendered prompt asks about.

    It reads the perturbation tag and the proposed action back out of the prompt's judgment turn,
    so a test only passes when the guard rendered the right prompt for the right candidate: the
    strategy under review is looked up first (``by_strategy``), then the proposed action
    (``by_action``), else ``default``.

    Args:
        by_action: P(HARMFUL) per proposed action (`action_match` says how a key matches).
        default: The P(HARMFUL) of everything else.
        by_strategy: P(HARMFUL) per strategy under review: the perturbation tag without its
            ``strategy_swap__`` prefix (`strategy_match` says how a key matches the tag).
        action_match: ``"exact"``, ``"prefix"`` (the action starts with the key) or
            ``"contains"``.
        strategy_match: ``"exact"`` (the strategy's name) or ``"contains"`` (the key occurs in
            the whole tag).
    """

    def __init__(self, by_action: Mapping[str, float] | None = None, default: float = 0.02, *,
                 by_strategy: Mapping[str, float] | None = None, action_match: Match = "prefix",
                 strategy_match: Literal["exact", "contains"] = "exact") -> None:
        self.by_action = dict(by_action or {})
        self.by_strategy = dict(by_strategy or {})
        self.default = default
        self.action_match = action_match
        self.strategy_match = strategy_match
        self.prompts: list[str] = []
        """Every prompt scored, in order."""
        self.seen: list[tuple[str, str]] = []
        """``(perturbation tag, proposed action)`` of every prompt scored, in order."""
        self._lock = threading.Lock()

    def score(self, prompts: list[str]) -> list[Score]:
        """Look each prompt's P(HARMFUL) up, with about one token per 4 characters.

        Args:
            prompts: Rendered MemRM prompts.

        Returns:
            One `Score` per prompt.

        Raises:
            AssertionError: A prompt does not end in ``"\\n\\nAnswer:"`` or has no judgment turn.
        """
        out = []
        for prompt in map(_protocol_prompt, prompts):
            found = _PROPOSED.match(prompt, max(0, prompt.rfind(_JUDGMENT)))
            if found is None:
                raise AssertionError("the guard sent a prompt without a proposed action to judge")
            tag, action = found.groups()
            with self._lock:
                self.prompts.append(prompt)
                self.seen.append((tag, action))
            out.append(_score(prompt, self.p_harmful(tag, action)))
        return out

    def p_harmful(self, tag: str, action: str) -> float:
        """The P(HARMFUL) for a perturbation tag and a proposed action (the lookup `score` makes).

        Args:
            tag: The perturbation tag, e.g. ``"strategy_swap__recent_window"``.
            action: The proposed action as the prompt shows it.

        Returns:
            The first match: by strategy, then by action, else `default`.
        """
        if self.strategy_match == "exact":
            p = self.by_strategy.get(tag.removeprefix(_STRATEGY_TAG))
        else:
            p = next((v for k, v in self.by_strategy.items() if k in tag), None)
        if p is not None:
            return p
        if self.action_match == "exact":
            return self.by_action.get(action, self.default)
        if self.action_match == "prefix":
            return next((v for k, v in self.by_action.items() if action.startswith(k)), self.default)
        return next((v for k, v in self.by_action.items() if k in action), self.default)


class FailingScorer:
    """A scorer that always raises, to exercise the guard's `on_error` policy."""

    def __init__(self) -> None:
        self.calls = 0
        """How many times `score` was called."""

    def score(self, prompts: list[str]) -> list[Score]:
        """Count the call and fail, as an unreachable scoring server would.

        Args:
            prompts: Ignored.

        Raises:
            ConnectionError: Always.
        """
        self.calls += 1
        raise ConnectionError("scoring server unavailable")


class RecordingSink:
    """An audit sink that keeps every Decision in memory (thread-safe)."""

    def __init__(self) -> None:
        self.decisions: list[Decision] = []
        """Every decision received, in order."""
        self._lock = threading.Lock()

    def emit(self, decision: Decision) -> None:
        """Keep the decision.

        Args:
            decision: The decision to keep.
        """
        with self._lock:
            self.decisions.append(decision)

    def close(self) -> None:
        """Nothing to release: the decisions stay readable."""
        return None

    @property
    def reviews(self) -> list[Decision]:
        """Decisions that probed the agent (cooldown vetoes did not)."""
        return [d for d in self.decisions if d.candidates]


class HashScorer:
    """A deterministic scorer whose verdict depends on the prompt itself (SAFE or HARMFUL by its hash).

    Several conversations run at once then get their own, different verdicts: a guard that mixed
    their state up would end one of them differently from its run alone.

    Args:
        harmful_share: The share of prompts called HARMFUL (P(HARMFUL) 0.95; the rest get 0.05).
    """

    def __init__(self, harmful_share: float = 0.5) -> None:
        self.harmful_share = harmful_share

    def score(self, prompts: list[str]) -> list[Score]:
        """Score each prompt by its SHA-256: the same prompt always gets the same verdict.

        Args:
            prompts: Rendered MemRM prompts.

        Returns:
            One `Score` per prompt, 0.95 or 0.05.
        """
        out = []
        for prompt in prompts:
            digest = int(hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()[:8], 16)
            harmful = digest / 0xFFFFFFFF < self.harmful_share
            out.append(Score(p_harmful=0.95 if harmful else 0.05, n_tokens=max(1, len(prompt) // 4)))
        return out
