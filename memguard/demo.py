"""`memguard demo`: the guard on real SWE-agent trajectories, with no agent or API key needed.

At several steps of a bundled trajectory an aggressive compaction is proposed (keep the system
prompt and the task, drop everything but the last exchange). The agent is a replay of the
recorded trajectory with a short working memory: while the context still shows its last
`memory` observations it repeats the recorded action; otherwise it has lost track and looks
around again. That agent is a toy, but the guard, the prompts and the scorer are the real ones,
so the decisions show what memguard does in an agent loop: the naive compaction changes the next
action, MemRM judges the change, and a fallback that keeps recent observations is accepted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from memguard.data import bundled_trajectories, load_trajectory
from memguard.events import CompactionEvent
from memguard.messages import Message, to_messages

__all__ = ["DemoStep", "ReplayAgent", "demo_events", "demo_fallbacks", "drop_middle"]

LOOK_AROUND = {
    "role": "assistant",
    "content": "I lost track of the files; let me look again.\n```\nfind . -name '*.py' | head -50\n```",
}


def demo_fallbacks() -> tuple[Any, ...]:
    """The default chain scaled to the bundled trajectories (a few turns, not hundreds)."""
    from memguard.strategies import KeepMore, ObservationMasking, RecentWindow

    masking = ObservationMasking(keep_last=2)
    return (masking, KeepMore(masking, 2.0), RecentWindow(keep_last=8))


def drop_middle(messages: Sequence[Any]) -> list[Message]:
    """The compaction being proposed: system + task, then only the last exchange."""
    msgs = to_messages(messages)
    return [*msgs[:2], *msgs[-2:]] if len(msgs) > 4 else list(msgs)


def _observations(messages: Sequence[Any]) -> list[str]:
    """Texts of the environment's answers after the task (tool results, SWE-agent user turns)."""
    msgs = to_messages(messages)
    return [m.text() for m in msgs[2:] if m.role in ("tool", "user")]


@dataclass
class ReplayAgent:
    """Replays `recorded` while its last `memory` observations are in view, else looks around."""

    recorded: dict[str, Any]
    full_context: Sequence[Any]
    memory: int = 3

    def __call__(self, messages: list[Any]) -> dict[str, Any]:
        needed = _observations(self.full_context)[-self.memory:]
        visible = set(_observations(messages))
        return self.recorded if all(text in visible for text in needed) else LOOK_AROUND


@dataclass
class DemoStep:
    """One proposed compaction with the agent that answers the guard's probes."""

    trajectory: str
    event: CompactionEvent
    agent: ReplayAgent


def demo_events(names: Sequence[str] = (), *, every: int = 2, first: int = 3) -> Iterator[DemoStep]:
    """A compaction proposal before every `every`-th assistant turn, from turn `first` on."""
    paths = [p.stem for p in bundled_trajectories()] if not names else list(names)
    for name in paths:
        messages = load_trajectory(name)
        turns = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
        for k, index in enumerate(turns):
            if k < first or (k - first) % every:
                continue
            before = messages[:index]
            recorded = messages[index]
            yield DemoStep(
                trajectory=str(name),
                event=CompactionEvent(
                    before=before,
                    candidate=[m.to_openai() for m in drop_middle(before)],
                    strategy="drop_middle",
                    step=k,
                    conversation_id=str(name),
                    recorded_response=recorded,
                ),
                agent=ReplayAgent(recorded, before),
            )
