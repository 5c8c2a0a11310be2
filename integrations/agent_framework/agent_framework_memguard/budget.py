"""When the context must shrink: the model's input budget, found in the strategies, and the context's size.

`ContextWindowCompactionStrategy` derives an input budget from the model's context window
(`input_budget_tokens` = window - max output). When the full context is already over it, the next
request cannot be sent as it is: vetoing the compaction would only move the failure to the model
call, so the review must commit the proposal or force its lowest-risk candidate. Wrapping
strategies (`AgentTriggeredCompactionStrategy.strategy`, `TokenBudgetComposedStrategy.strategies`,
a `MemGuardCompaction.inner`) are searched too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from agent_framework import CharacterEstimatorTokenizer, TokenizerProtocol, included_token_count
from agent_framework import Message as AFMessage
from agent_framework._compaction import annotate_token_counts

__all__ = ["InputBudget", "find_input_budget", "nested_strategies"]

_NESTING = ("inner", "strategy", "strategies")


def nested_strategies(strategy: Any, *, depth: int = 8) -> Iterator[Any]:
    """`strategy` and every strategy it wraps (`inner`, `strategy`, `strategies`), depth first."""
    yield strategy
    if depth <= 0:
        return
    for name in _NESTING:
        value = getattr(strategy, name, None)
        children = value if isinstance(value, (list, tuple)) else [value]
        for child in children:
            if child is not None and child is not strategy and callable(child):
                yield from nested_strategies(child, depth=depth - 1)


@dataclass(frozen=True)
class InputBudget:
    """A token budget the full context must fit, measured with its owner's tokenizer.

    Attributes:
        tokens: The budget (`input_budget_tokens`).
        tokenizer: The tokenizer the owning strategy counts with.
    """

    tokens: int
    tokenizer: TokenizerProtocol

    def exceeded(self, messages: list[AFMessage]) -> bool:
        """Whether the included messages are over the budget (counts the owner would write itself).

        Token counts already annotated are reused; missing ones are written with the owner's
        tokenizer, the first thing the owning strategy does when it runs.
        """
        annotate_token_counts(messages, tokenizer=self.tokenizer)
        return included_token_count(messages) > self.tokens


def find_input_budget(strategy: Any, explicit: int | str | None = "auto") -> InputBudget | None:
    """The input budget for `strategy`: `explicit` tokens, or the first `input_budget_tokens` it wraps.

    Args:
        strategy: The guarded compaction strategy.
        explicit: ``"auto"`` (search the strategy), a token count, or None (never must reduce).

    Returns:
        The budget with the tokenizer to measure it, or None.

    Raises:
        ValueError: For an `explicit` value that is neither "auto", None nor a positive int.
    """
    if explicit is None:
        return None
    owner = next((s for s in nested_strategies(strategy) if isinstance(getattr(s, "input_budget_tokens", None), int)),
                 None)
    tokenizer = getattr(owner, "tokenizer", None) if owner is not None else None
    if not isinstance(tokenizer, TokenizerProtocol):
        tokenizer = next((t for s in nested_strategies(strategy)
                          if isinstance(t := getattr(s, "tokenizer", None), TokenizerProtocol)),
                         CharacterEstimatorTokenizer())
    if explicit == "auto":
        return None if owner is None else InputBudget(int(owner.input_budget_tokens), tokenizer)
    if isinstance(explicit, bool) or not isinstance(explicit, int) or explicit <= 0:
        raise ValueError(f"input_budget_tokens must be 'auto', None or a positive token count, got {explicit!r}")
    return InputBudget(explicit, tokenizer)
