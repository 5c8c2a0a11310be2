"""Every default and constant of the guard, in one frozen, validated object.

`GuardSettings` is what `Guard` runs on and what the `[guard]` table of a TOML config parses
into, so a default changes in one place and a config file cannot say anything `Guard(...)` would
refuse. The commit rule lives here too, once, for the guard and the threshold sweep alike:

    commit iff P(HARMFUL) < threshold

The coverage band (covered iff P(SAFE) >= t or <= 1 - t, t = 0.88) is reported on every candidate
and gates commits only when the user asks for it (`band_gate=True`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from memguard.protocol import COVERAGE_T, MAX_LENGTH, coverage_band
from memguard.strategies import Strategy, as_strategy, resolve_strategy

__all__ = [
    "COVERAGE_T",
    "DEFAULT_ADAPTER",
    "DEFAULT_BASE",
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_SUBFOLDER",
    "DEFAULT_THRESHOLD",
    "GuardSettings",
    "band_label",
    "commits",
]

DEFAULT_BASE = "Qwen/Qwen3-1.7B-Base"
DEFAULT_ADAPTER = "MemGym/memgym-rm-1p7b"
DEFAULT_SUBFOLDER = "checkpoint-500"  # the adapter lives in a subfolder, not at the repo root
DEFAULT_MAX_LENGTH = MAX_LENGTH  # training's left-cut limit, in tokens
DEFAULT_THRESHOLD = 0.5  # the argmax behind the published accuracy and F1


def commits(p_harmful: float, threshold: float) -> bool:
    """The one commit rule: a score is acceptable iff P(HARMFUL) < threshold.

    A score equal to the threshold is not committed; `memguard calibrate`'s threshold sweep
    predicts SAFE by the same strict comparison.

    Args:
        p_harmful: MemRM's P(HARMFUL).
        threshold: The commit threshold.

    Returns:
        True when the score may be committed.
    """
    return p_harmful < threshold


def band_label(p_harmful: float, band: float | None, threshold: float = DEFAULT_THRESHOLD) -> str:
    """The coverage band of a score; with no band, "safe"/"harmful" by the commit rule.

    Args:
        p_harmful: MemRM's P(HARMFUL).
        band: The coverage band t; None labels by `threshold` alone.
        threshold: The commit threshold, used only when `band` is None.

    Returns:
        "safe", "uncertain" or "harmful".
    """
    if band is None:
        return "safe" if commits(p_harmful, threshold) else "harmful"
    return coverage_band(p_harmful, band)


class GuardSettings(BaseModel):
    """The guard's policy: validated once, frozen, shared by `Guard` and `[guard]` in TOML.

    A config file cannot say anything `Guard(...)` would refuse: both parse into this model.
    `fallbacks` holds strategy objects; in TOML they are written by name
    (`observation_masking`, `recent_window`, `<name>+keep_more_x<factor>`). The deprecated
    ``uncertain="harmful"|"safe"`` (0.1.0) is still accepted as ``band_gate=True|False``, with a
    `DeprecationWarning`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    mode: Literal["enforce", "audit"] = "enforce"
    """Whether decisions are applied ("enforce") or only recorded, off the agent's path ("audit")."""
    threshold: float = Field(default=DEFAULT_THRESHOLD, gt=0.0, le=1.0,
                             description="Commit iff P(HARMFUL) < threshold.")
    """Commit iff P(HARMFUL) < threshold (0 < threshold <= 1)."""
    band: float | None = Field(default=COVERAGE_T, ge=0.5, le=1.0,
                               description="Coverage band t, reported on every candidate; None: not reported.")
    """The coverage band t reported on every candidate (0.5 to 1; None: not reported)."""
    band_gate: bool = Field(default=False,
                            description="Also refuse a candidate whose score is inside the band (uncertain).")
    """Also refuse a candidate whose score is inside the band (uncertain)."""
    fallbacks: tuple[Strategy, ...] = Field(default=(), description="Safer strategies, tried in order.")
    """Safer strategies, tried in order when the proposal is not acceptable."""
    search: Literal["sequential", "parallel"] = "sequential"
    """How fallbacks are tried: "sequential" probes one at a time (fewest agent calls), "parallel"
    probes all at once and scores them in one call (lowest latency); both pick the same winner.
    """
    hard_budget: int | None = Field(default=None, gt=0, description="Tokens the context must fit in: no veto.")
    """Tokens the context must fit in: when nothing is safe, the lowest-risk candidate that fits is
    committed instead of a veto (None: no budget).
    """
    on_error: Literal["open", "closed"] = "open"
    """A scorer or agent error, NaN or timeout: "open" commits the compaction, "closed" keeps the
    full context.
    """
    timeout: float | None = Field(default=None, gt=0, description="Seconds for each probe, strategy and score.")
    """Seconds for each probe, fallback and scorer call (None: no limit)."""
    cooldown: int = Field(default=3, ge=0, description="Steps a conversation is not reviewed after a veto.")
    """Steps a conversation is not reviewed after a veto (0: always reviewed)."""
    identical_is_safe: bool = Field(default=True, description="Identical next actions are SAFE without an RM call.")
    """Identical, non-empty next actions under both contexts are SAFE without an RM call."""
    audit_queue_size: int = Field(default=1024, ge=1, description="Audit jobs waiting at most; more are dropped.")
    """Audit jobs waiting at most; more are dropped and counted (audit mode never blocks the agent)."""
    max_conversations: int = Field(default=10_000, ge=1,
                                   description="Conversations whose cooldown state is kept (least recent out).")
    """Conversations whose cooldown state is kept (least recently seen dropped first)."""
    max_stalled_calls: int = Field(default=4, ge=1,
                                   description="Timed-out scorer calls still running before new ones fail fast.")
    """Timed-out scorer calls still running before new calls fail fast into `on_error` instead of
    piling up.
    """

    @model_validator(mode="before")
    @classmethod
    def _uncertain_alias(cls, data: Any) -> Any:
        """`uncertain="harmful"|"safe"` (0.1.0) maps to `band_gate=True|False`."""
        if isinstance(data, dict) and "uncertain" in data:
            data = dict(data)
            uncertain = data.pop("uncertain")
            if uncertain not in ("harmful", "safe"):
                raise ValueError(f"uncertain: must be 'harmful' or 'safe' (got {uncertain!r})")
            warnings.warn("uncertain= is deprecated: use band_gate=True (uncertain='harmful') or leave it off",
                          DeprecationWarning, stacklevel=4)
            data.setdefault("band_gate", uncertain == "harmful")
        return data

    @field_validator("fallbacks", mode="before")
    @classmethod
    def _strategies(cls, value: Any) -> tuple[Strategy, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ValueError("fallbacks: expected a list of strategies or strategy names")
        return tuple(resolve_strategy(item) if isinstance(item, str) else as_strategy(item) for item in value)

    @field_serializer("fallbacks")
    def _names(self, fallbacks: tuple[Strategy, ...]) -> list[str]:
        return [strategy.name for strategy in fallbacks]

    # ------------------------------------------------------------------ the rule

    def acceptable(self, p_harmful: float) -> bool:
        """Whether one score may be committed: the commit rule, plus the band with `band_gate`.

        Args:
            p_harmful: MemRM's P(HARMFUL) for a candidate.

        Returns:
            True when a candidate with this score may be committed.
        """
        if not commits(p_harmful, self.threshold):
            return False
        return not (self.band_gate and self.band_of(p_harmful) == "uncertain")

    def band_of(self, p_harmful: float) -> str:
        """The coverage band of one score under these settings (`band_label`).

        Args:
            p_harmful: MemRM's P(HARMFUL).

        Returns:
            "safe", "uncertain" or "harmful".
        """
        return band_label(p_harmful, self.band, self.threshold)

    @property
    def uncertain(self) -> str:
        """0.1.0's name for `band_gate`, read-only."""
        return "harmful" if self.band_gate else "safe"
