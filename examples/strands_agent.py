"""Guard a Strands agent's conversation manager with memguard.

Offline (the default) everything is local and nothing reaches the network (no AWS credentials,
no Bedrock: the agent's model is given explicitly):
- the agent's model is a scripted `strands.models.Model` whose next command depends on whether it
  still sees the failing test named in its first tool output;
- the conversation manager is Strands' `SummarizingConversationManager` with proactive
  compression; its summarizer (the agent's ``aux_model``, scripted too) leaves that name out;
- the scorer is a LABELLED SCORER DOUBLE, not MemRM: harmful exactly when the agent's next action
  under the reduced context shows it forgot. Pass ``--rm-url`` to score with a real MemRM served
  by vLLM (`RemoteMemRM`) instead.

    python examples/strands_agent.py                 # enforce: the lossy summary is replaced
    python examples/strands_agent.py --mode audit    # the manager's own summary, scored aside
    python examples/strands_agent.py --stream        # the same through agent.stream_async
    python examples/strands_agent.py --rm-url http://localhost:8000

In enforce mode the guard vetoes the summary and commits its fallback instead: a window that keeps
the task's opening (with the failing test's name) and the latest steps.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from memguard import Decision, Guard, JSONLSink, RecentWindow
from memguard.testing import MarkerScorer
from strands import Agent, tool
from strands.agent.conversation_manager import SummarizingConversationManager
from strands.models import Model

from strands_memguard import MemGuardConversationManager

FACT = "tests/test_dates.py::test_leap_year"
TASK = "Find the failing test, then fix it."
N_STEPS = 6


# --------------------------------------------------------------------------- offline stand-ins


def _text(messages: Sequence[Any]) -> str:
    parts = []
    for message in messages:
        for block in message["content"]:
            if "text" in block:
                parts.append(block["text"])
            elif "toolUse" in block:
                parts.append(json.dumps(block["toolUse"]["input"]))
            elif "toolResult" in block:
                parts.extend(item.get("text", "") for item in block["toolResult"]["content"])
    return "\n".join(parts)


def scripted_agent(messages: Sequence[Any]) -> list[dict[str, Any]]:
    """Runs `pytest -x  # step k` while it sees FACT, `ls -la  # step k` once it lost it; then answers."""
    text = _text(messages)
    k = max((int(s) for s in re.findall(r"step (\d+)", text)), default=0)
    if k >= N_STEPS:
        return [{"text": f"Fixed {FACT}." if FACT in text else "I lost track of the failing test."}]
    command = f"pytest -x  # step {k + 1}" if FACT in text or k == 0 else f"ls -la  # step {k + 1}"
    return [{"toolUse": {"toolUseId": f"call-{k + 1}", "name": "bash", "input": {"command": command}}}]


def scripted_summarizer(messages: Sequence[Any]) -> list[dict[str, Any]]:
    steps = re.findall(r"step (\d+)", _text(messages))
    return [{"text": f"Ran test commands up to step {max((int(s) for s in steps), default=0)}."}]


class ScriptedModel(Model):
    """An offline Strands model: `answer(messages)` gives the reply, streamed as Converse events."""

    def __init__(self, answer: Any, model_id: str) -> None:
        self.answer = answer
        self.config: dict[str, Any] = {"model_id": model_id, "context_window_limit": 300}
        self.calls = 0

    def update_config(self, **model_config: Any) -> None:
        self.config.update(model_config)

    def get_config(self) -> dict[str, Any]:
        return self.config

    async def structured_output(self, output_model: Any, prompt: Any, system_prompt: str | None = None,
                                **kwargs: Any) -> AsyncGenerator[Any, None]:
        raise NotImplementedError
        yield  # an async generator, as the interface expects

    async def stream(self, messages: Any, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncGenerator[dict[str, Any], None]:
        self.calls += 1
        blocks = self.answer(messages)
        yield {"messageStart": {"role": "assistant"}}
        for block in blocks:
            if "text" in block:
                yield {"contentBlockDelta": {"delta": {"text": block["text"]}}}
            else:
                use = block["toolUse"]
                start = {"toolUse": {"name": use["name"], "toolUseId": use["toolUseId"]}}
                yield {"contentBlockStart": {"start": start}}
                yield {"contentBlockDelta": {"delta": {"toolUse": {"input": json.dumps(use["input"])}}}}
            yield {"contentBlockStop": {}}
        yield {"messageStop": {"stopReason": "tool_use" if "toolUse" in blocks[-1] else "end_turn"}}
        size = len(_text(messages)) // 4
        yield {"metadata": {"usage": {"inputTokens": size, "outputTokens": 9, "totalTokens": size + 9},
                            "metrics": {"latencyMs": 1}}}


@tool
def bash(command: str) -> str:
    """Run a shell command in the repository.

    Args:
        command: The command to run.
    """
    step = re.findall(r"step (\d+)", command)
    output = f"$ {command}\n" + "collected 212 items\n" * 4
    return output + (f"FAILED {FACT}" if step == ["1"] else "(output elided)")


def oracle_scorer() -> MarkerScorer:
    """A LABELLED SCORER DOUBLE, not MemRM: harmful iff the proposed action shows forgetting."""
    return MarkerScorer(["ls -la", "lost track"])


# --------------------------------------------------------------------------- wiring


def show(decision: Decision) -> None:
    if decision.pending:  # audit mode: the reduction is applied, the score arrives in the log
        print(f"  memguard: audit    {decision.proposed_strategy} applied, scoring in the background")
    else:
        print(f"  memguard: {decision.summary()}")


def build(args: argparse.Namespace) -> tuple[Agent, Guard, ScriptedModel]:
    if args.rm_url:
        from memguard import RemoteMemRM

        scorer: Any = RemoteMemRM(args.rm_url, model=args.rm_model)
    else:
        scorer = oracle_scorer()
    guard = Guard(scorer, mode=args.mode, sinks=[JSONLSink(args.audit_log)] if args.audit_log else [])
    # Instead of conversation_manager=SummarizingConversationManager(...): the same manager, guarded.
    # Tried when its summary is judged harmful: a window that keeps the opening and the latest steps.
    manager = MemGuardConversationManager(
        SummarizingConversationManager(summary_ratio=0.5, preserve_recent_messages=2,
                                       proactive_compression={"compression_threshold": 0.5}),
        guard, fallbacks=[RecentWindow(keep_first=4, keep_last=4)], on_decision=show)
    model = ScriptedModel(scripted_agent, "scripted-agent")
    agent = Agent(model=model, aux_model=ScriptedModel(scripted_summarizer, "scripted-summarizer"), tools=[bash],
                  system_prompt="You are a careful programmer.", conversation_manager=manager, callback_handler=None)
    return agent, guard, model


async def stream(agent: Agent, task: str) -> str:
    result = None
    async for event in agent.stream_async(task):
        result = event.get("result", result)
    return str(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["enforce", "audit"], default="enforce")
    parser.add_argument("--stream", action="store_true", help="run through agent.stream_async")
    parser.add_argument("--rm-url", default=os.environ.get("MEMGUARD_RM_URL"),
                        help="a vLLM server serving MemRM (RemoteMemRM); default: the offline scorer double")
    parser.add_argument("--rm-model", default="memrm", help="the served LoRA adapter's name")
    parser.add_argument("--audit-log", default=None, help="also write every decision to this JSONL audit log")
    args = parser.parse_args(argv)

    agent, guard, model = build(args)
    answer = asyncio.run(stream(agent, TASK)) if args.stream else str(agent(TASK))
    guard.close()  # flushes audit work and closes the sinks
    print("final answer:", answer.strip())
    print("messages in history:", len(agent.messages), "| model calls:", model.calls)
    if args.audit_log:
        print("decisions written to", args.audit_log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
