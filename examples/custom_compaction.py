"""Guard a custom summariser with the decorator, replaying a real SWE-agent trajectory.

    python examples/custom_compaction.py                       # offline: tiny random RM
    python examples/custom_compaction.py --base Qwen/Qwen3-1.7B-Base \
        --adapter MemGym/memgym-rm-1p7b                        # the real MemRM (hub or local paths)

Offline, the reward model is a tiny *random* Qwen3 built on the fly: the plumbing is real (the
prompt, the probes, the fallbacks, the audit file), the P(HARMFUL) numbers mean nothing.

The agent is scripted: it replays the trajectory's recorded actions, but only while it can
still see its latest observations; a context that lost them makes it re-explore (`ls -la`),
which is exactly the kind of regression MemRM is trained to flag.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from memguard import Guard, JSONLSink, ObservationMasking, guarded
from memguard.data import bundled_trajectories, load_trajectory
from memguard.protocol import summary_message


def my_summariser(messages: list[dict[str, Any]], keep_tail: int = 2) -> list[dict[str, Any]]:
    """A lossy hand-written compaction: system + task + a one-line summary + a short tail."""
    dropped = messages[2:-keep_tail]
    actions = sum(1 for m in dropped if m["role"] == "assistant")
    return [*messages[:2], summary_message(f"Took {actions} earlier actions."), *messages[-keep_tail:]]


class ReplayAgent:
    """Answers with the trajectory's next recorded action while its recent observations survive."""

    def __init__(self, trajectory: list[dict[str, Any]], needs_last: int = 2) -> None:
        self.trajectory = trajectory
        self.needs_last = needs_last

    def __call__(self, context: list[dict[str, Any]]) -> dict[str, Any]:
        observations = [m for m in context if m["role"] in ("tool", "user")][1:]
        position = self._position(context)
        recent = [m for m in self.trajectory[:position] if m["role"] in ("tool", "user")][1:][-self.needs_last:]
        remembers = all(any(o.get("content") == r.get("content") for o in observations) for r in recent)
        if remembers and position < len(self.trajectory):
            return dict(self.trajectory[position])
        return {"role": "assistant", "content": "I lost track of the files; let me look again.\nls -la"}

    def _position(self, context: list[dict[str, Any]]) -> int:
        """Index in the trajectory right after the context's last message."""
        last = context[-1]
        for index in range(len(self.trajectory) - 1, -1, -1):
            if self.trajectory[index].get("content") == last.get("content"):
                return index + 1
        return len(self.trajectory)


def load_scorer(args: argparse.Namespace) -> Any:
    from memguard import MemRM

    if args.base:
        return MemRM.from_pretrained(base=args.base, adapter=args.adapter, subfolder=args.subfolder)
    from memguard.testing import build_tiny_rm

    root = build_tiny_rm(Path(tempfile.mkdtemp(prefix="memguard-tiny-")), tokenizer="byte")
    print("OFFLINE: tiny random reward model, the scores below are meaningless (plumbing check).")
    return MemRM.from_pretrained(base=str(root / "base"), adapter=str(root / "adapter"), subfolder="checkpoint-500")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectory", default=str(bundled_trajectories()[0]), help="trajectory JSON file")
    parser.add_argument("--base", help="base model (hub id or path); omit for the offline tiny model")
    parser.add_argument("--adapter", default="MemGym/memgym-rm-1p7b")
    parser.add_argument("--subfolder", default="checkpoint-500")
    parser.add_argument("--budget-chars", type=int, default=4000, help="compact when the context is larger")
    parser.add_argument("--audit", default=None, help="also write every decision to this JSONL audit log")
    args = parser.parse_args(argv)

    trajectory = load_trajectory(args.trajectory)
    agent = ReplayAgent(trajectory)
    sinks = [JSONLSink(args.audit)] if args.audit else []
    guard = Guard(load_scorer(args), fallbacks=(ObservationMasking(keep_last=4),), sinks=sinks, cooldown=1)
    summarise = guarded(guard=guard, policy=agent)(my_summariser)

    context = trajectory[:2]
    print(f"{'step':>4}  {'messages':>9}  decision")
    for index in range(2, len(trajectory)):
        context = [*context, trajectory[index]]
        if trajectory[index]["role"] == "assistant" or sum(len(str(m.get("content"))) for m in context) <= args.budget_chars:
            continue
        before = len(context)
        context, decision = summarise.with_decision(context)
        print(f"{decision.step:>4}  {before:>3} → {len(context):<3}  {decision.summary()}")
    guard.close()
    if args.audit:
        print(f"audit log: {args.audit} (memguard report {args.audit} -o report.html)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
