"""Guard a Microsoft Agent Framework agent's memory compaction with memguard.

Offline (the default) everything is local and nothing is downloaded:
- the agent's chat client is a scripted one built from the framework's own layers (tool loop, chat
  middleware, telemetry over `BaseChatClient`); its next command depends on whether it still
  remembers a fact from its first tool result;
- the compaction is Agent Framework's `SlidingWindowStrategy` (it drops that tool result);
- MemRM is a *tiny random* model built on the fly with `memguard.testing.build_tiny_rm`: its
  scores are meaningless, it only exercises the real loading and scoring path. Pass
  ``--scorer oracle`` for a labelled scorer double that plays a well-behaved RM instead
  (harmful whenever the agent's action shows it forgot), to see vetoes and fallbacks.

With a real model, build the agent with your provider's client instead (for example
`agent_framework.openai.OpenAIChatClient`, from agent-framework-openai); the guard is wired the
same way, by `guard_agent(agent, guard)`.

`--mode audit` runs the same wiring with `Guard(mode="audit")`: the compaction always applies, and
every compaction is scored in the background (into `--audit-log`
when you pass one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from agent_framework import (
    Agent,
    BaseChatClient,
    ChatMiddlewareLayer,
    ChatResponse,
    Content,
    FunctionInvocationLayer,
    Message,
    SlidingWindowStrategy,
    ToolResultCompactionStrategy,
    tool,
)
from agent_framework.observability import ChatTelemetryLayer
from memguard import Decision, Guard, JSONLSink
from memguard.testing import MarkerScorer

from agent_framework_memguard import guard_agent

FACT = "the failing test is tests/test_dates.py::test_leap_year"
TASK = "Find the failing test, then fix it."
N_STEPS = 6


# --------------------------------------------------------------------------- offline stand-ins


class ScriptedChatClient(FunctionInvocationLayer[Any], ChatMiddlewareLayer[Any], ChatTelemetryLayer[Any],
                         BaseChatClient[Any]):
    """Runs `echo step k` while it remembers FACT, `ls -la` once it forgot; then answers."""

    OTEL_PROVIDER_NAME = "scripted"

    def _inner_get_response(self, *, messages: Sequence[Message], stream: bool, options: Mapping[str, Any],
                            **kwargs: Any) -> Any:
        text = "\n".join(str(c.result) if c.type == "function_result" else (c.text or "")
                         for m in messages for c in m.contents)
        k = max((int(s) for s in re.findall(r"step (\d+) ok", text)), default=0)
        if k >= N_STEPS:
            done = "fixed " + FACT if FACT in text else "I lost track of the failing test."
            reply = Message("assistant", ["Done: " + done])
        else:
            command = f"echo step {k + 1}" if FACT in text or k == 0 else f"ls -la  # step {k + 1}"
            reply = Message("assistant", [Content.from_function_call(f"call_{k + 1}", "bash",
                                                                     arguments=json.dumps({"command": command}))])

        async def respond() -> ChatResponse[Any]:
            return ChatResponse(messages=[reply], model="scripted-agent")

        return respond()


def oracle_scorer() -> MarkerScorer:
    """A LABELLED SCORER DOUBLE, not MemRM: harmful iff the proposed action shows forgetting."""
    return MarkerScorer(["ls -la", "lost track"])


@tool
def bash(command: str) -> str:
    """Run a shell command in the repository."""
    found = re.search(r"step (\d+)", command)
    step = found.group(1) if found else "?"
    return f"step {step} ok" + (f"; pytest says {FACT}" if step == "1" else "")


# --------------------------------------------------------------------------- wiring


def load_scorer(args: argparse.Namespace) -> Any:
    if args.scorer == "oracle":
        return oracle_scorer()
    from memguard.scoring.local import MemRM

    if args.rm_base:
        return MemRM.from_pretrained(base=args.rm_base, adapter=args.rm_adapter, subfolder=args.rm_subfolder)
    from memguard.testing import load_tiny_rm

    print("[offline] tiny RANDOM MemRM (scores are meaningless; --scorer oracle plays a labelled RM)", file=sys.stderr)
    return load_tiny_rm()


def show(decision: Decision) -> None:
    if decision.pending:  # audit mode: the compaction is applied, the score arrives in the log
        print(f"  memguard: audit    {decision.strategy} applied, scoring in the background")
    else:
        print(f"  memguard: {decision.summary()}")


async def run(agent: Agent[Any], task: str) -> str:
    session = agent.create_session(session_id="example")
    response = await agent.run(task, session=session)
    stored = session.state["in_memory"]["messages"]
    print("messages in history:", len(stored), "| excluded by compaction:",
          sum(bool(m.additional_properties.get("_excluded")) for m in stored))
    return response.messages[-1].text  # the answer (response.text also holds summaries the step inserted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["enforce", "audit"], default="enforce")
    parser.add_argument("--scorer", choices=["memrm", "oracle"], default="memrm")
    parser.add_argument("--rm-base", default=os.environ.get("MEMGUARD_RM_BASE"),
                        help="MemRM base (local path or hub id); default: tiny random RM")
    parser.add_argument("--rm-adapter", default=os.environ.get("MEMGUARD_RM_ADAPTER", "MemGym/memgym-rm-1p7b"))
    parser.add_argument("--rm-subfolder", default="checkpoint-500")
    parser.add_argument("--audit-log", default=None, help="also write every decision to this JSONL audit log")
    parser.add_argument("--task", default=TASK)
    args = parser.parse_args(argv)

    guard = Guard(load_scorer(args), mode=args.mode, sinks=[JSONLSink(args.audit_log)] if args.audit_log else [])
    agent = Agent(ScriptedChatClient(), instructions="You are a careful programmer.", tools=[bash],
                  compaction_strategy=SlidingWindowStrategy(keep_last_groups=3),
                  default_options={"temperature": 0.2})
    # The agent's own strategy, guarded: when it is judged harmful, ToolResultCompactionStrategy
    # (old tool results collapsed into a summary that keeps them readable) is tried instead.
    guard_agent(agent, guard, fallbacks=[ToolResultCompactionStrategy(keep_last_tool_call_groups=2)],
                on_decision=show)

    answer = asyncio.run(run(agent, args.task))
    guard.close()  # flushes audit work and closes the sinks
    print("final answer:", answer)
    if args.audit_log:
        print("decisions written to", args.audit_log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
