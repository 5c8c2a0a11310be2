"""`guard_app`: an ADK `App` with its events compaction guarded by memguard, in one call."""

from __future__ import annotations

from typing import Any

from google.adk.apps.app import App
from memguard import Guard

from google_adk_memguard.summarizer import MemGuardSummarizer

__all__ = ["guard_app"]


def guard_app(app: App, guard: Guard, **options: Any) -> App:
    """A copy of `app` whose compaction summarizer is guarded and whose plugins end with the guard's.

    Args:
        app: An app with an `events_compaction_config` (its summarizer, or ADK's default when it
            has none, becomes the guarded inner summarizer).
        guard: The memguard `Guard` that decides.
        **options: `MemGuardSummarizer` options (`fallbacks`, `on_decision`, `model`,
            `hard_token_limit`, `probe_message`).

    Returns:
        The guarded copy; `app` itself is left as it was (they share the agent tree).

    Raises:
        ValueError: `app` has no compaction config, or it is already guarded.
    """
    config = app.events_compaction_config
    if config is None:
        raise ValueError(
            f"app {app.name!r} has no events_compaction_config: there is no compaction to guard "
            "(set App(events_compaction_config=EventsCompactionConfig(...)) first)"
        )
    if isinstance(config.summarizer, MemGuardSummarizer):
        raise ValueError(f"app {app.name!r} is already guarded by memguard")
    summarizer = MemGuardSummarizer(config.summarizer, guard, **options)
    return app.model_copy(update={
        "events_compaction_config": config.model_copy(update={"summarizer": summarizer}),
        "plugins": [*app.plugins, summarizer.plugin],
    })
