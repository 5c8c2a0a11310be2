"""The user's `on_decision` hook, called so that it can never break the agent."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from memguard import Decision

__all__ = ["notify"]

logger = logging.getLogger("memguard.openai_agents")


def notify(hook: Callable[[Decision], Any] | None, decision: Decision) -> None:
    """Call `hook(decision)`; a failure is logged by exception type only (messages may quote the conversation)."""
    if hook is None:
        return
    try:
        hook(decision)
    except Exception as exc:  # noqa: BLE001 - a user hook must not break the agent
        logger.error("memguard: on_decision hook failed (%s)", type(exc).__name__)
