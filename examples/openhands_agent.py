"""Guard an OpenHands agent's condenser with memguard.

Offline (the default) everything is local and nothing reaches the network:
- the agent's LLM is a scripted `TestLLM` whose next command depends on whether it still sees the
  failing test named in its first tool output; the summarizer's summary leaves that name out;
- the tool is a small stand-in for OpenHands' shell tool (named ``bash`` here so it cannot clash with
  a registered ``terminal``), run in a temporary local workspace;
- the scorer is a LABELLED SCORER DOUBLE, not MemRM: harmful exactly when the agent's next action
  under the condensed view shows it forgot. Pass ``--rm-url`` to score with a real MemRM served
  by vLLM (`RemoteMemRM`) instead.

    python examples/openhands_agent.py                 # enforce: the lossy summary is replaced
    python examples/openhands_agent.py --mode audit    # the agent's own condenser, scored aside
    python examples/openhands_agent.py --rm-url http://localhost:8000

The run ends with ``conversation.condense()``, an explicit request: a HARD requirement, where a
veto is not allowed and the guard commits the lowest-risk candidate it can store.
"""

# ruff: noqa: E402 - the environment must be set before LiteLLM is imported
from __future__ import annotations

import os

# LiteLLM (imported by the SDK) fetches a model cost map at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import argparse
import json
import re
import tempfile
from collections.abc import Sequence
from typing import Any

from memguard import Decision, Guard, JSONLSink, ObservationMasking, Score
from openhands.sdk import Agent, Conversation
from openhands.sdk.context.condenser import LLMSummarizingCondenser
from openhands.sdk.event import Condensation, MessageEvent
from openhands.sdk.llm import LLMResponse, Message, MessageToolCall, TextContent
from openhands.sdk.testing import TestLLM
from openhands.sdk.tool import Action, Observation, Tool, ToolDefinition, ToolExecutor, register_tool
from pydantic import Field

from openhands_memguard import guard_agent

FAILING = "tests/test_dates.py::test_leap_year"
TASK = "Find the failing test, then fix it."
N_STEPS = 7


# --------------------------------------------------------------------------- offline stand-ins


class RunCommand(Action):
    command: str = Field(description="The shell command to run.")


class CommandOutput(Observation):
    pass


class FakeShell(ToolExecutor):
    def __call__(self, action: RunCommand, conversation: Any = None) -> CommandOutput:
        found = re.search(r"step (\d+)", action.command)
        step = found.group(1) if found else "?"
        return CommandOutput.from_text(f"step {step} ok" + (f"; pytest: FAILED {FAILING}" if step == "1" else ""))


class DemoShellTool(ToolDefinition[RunCommand, CommandOutput]):
    name = "bash"

    @classmethod
    def create(cls, conv_state: Any = None, **params: Any) -> Sequence[DemoShellTool]:
        return [cls(description="Run a shell command.", action_type=RunCommand, observation_type=CommandOutput,
                    executor=FakeShell())]


def _text(messages: list[Message]) -> str:
    texts = [item.text for m in messages for item in m.content if isinstance(item, TextContent)]
    return "\n".join(texts + [call.arguments for m in messages for call in (m.tool_calls or [])])


class _ContextLLM(TestLLM):
    """A TestLLM whose answer depends on its input, so probes on two contexts can differ."""

    def reply(self, text: str) -> Message:
        raise NotImplementedError

    def completion(self, messages: list[Message], *args: Any, **kwargs: Any) -> LLMResponse:
        self._call_count += 1
        message = self.reply(_text(messages))
        raw = self._create_model_response(message)
        return LLMResponse(message=message, metrics=self._zero_metrics(), raw_response=raw)


class ScriptedAgentLLM(_ContextLLM):
    """`echo step k` while it sees the failing test, `ls -la` once it forgot; then it answers."""

    def reply(self, text: str) -> Message:
        k = max((int(s) for s in re.findall(r"\bstep (\d+)\b", text)), default=0)
        if k >= N_STEPS:
            answer = f"Fixed {FAILING}." if FAILING in text else "I lost track of the failing test."
            return Message(role="assistant", content=[TextContent(text=answer)])
        command = f"echo step {k + 1}" if FAILING in text or k == 0 else f"ls -la  # step {k + 1}"
        call = MessageToolCall(id=f"call_{k + 1}", name="bash", origin="completion",
                               arguments=json.dumps({"command": command, "security_risk": "LOW"}))
        return Message(role="assistant", content=[TextContent(text="")], tool_calls=[call])


class ScriptedSummarizerLLM(_ContextLLM):
    def reply(self, text: str) -> Message:
        k = max((int(s) for s in re.findall(r"\bstep (\d+)\b", text)), default=0)
        return Message(role="assistant", content=[TextContent(text=f"The agent ran commands up to step {k}.")])


class ForgettingOracle:
    """A LABELLED SCORER DOUBLE, not MemRM: harmful iff the proposed action shows forgetting."""

    def score(self, prompts: list[str]) -> list[Score]:
        scores = []
        for prompt in prompts:
            proposed = prompt.rsplit("Proposed action under perturbation", 1)[1]
            forgot = "ls -la" in proposed or "lost track" in proposed
            scores.append(Score(p_harmful=0.97 if forgot else 0.03, n_tokens=len(prompt) // 4))
        return scores


# --------------------------------------------------------------------------- wiring


def show(decision: Decision) -> None:
    print(f"  memguard: {decision.summary()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["enforce", "audit"], default="enforce")
    parser.add_argument("--rm-url", default=os.environ.get("MEMGUARD_RM_URL"),
                        help="a vLLM server serving MemRM (RemoteMemRM); default: the offline scorer double")
    parser.add_argument("--rm-model", default="memrm", help="the served LoRA adapter's name")
    parser.add_argument("--audit-log", default=None, help="also write every decision to this JSONL audit log")
    args = parser.parse_args(argv)

    if args.rm_url:
        from memguard import RemoteMemRM

        scorer: Any = RemoteMemRM(args.rm_url, model=args.rm_model)
    else:
        scorer = ForgettingOracle()
    register_tool("bash", DemoShellTool)
    summarizer = ScriptedSummarizerLLM(model="scripted", usage_id="condenser")
    agent = Agent(
        llm=ScriptedAgentLLM(model="scripted", usage_id="agent"),
        tools=[Tool(name="bash")],
        include_default_tools=[],
        condenser=LLMSummarizingCondenser(llm=summarizer, max_size=12, keep_first=2),
    )
    guard = Guard(scorer, mode=args.mode, sinks=[JSONLSink(args.audit_log)] if args.audit_log else [],
                  fallbacks=[ObservationMasking(keep_last=4)])
    # Tried first: the same summarizer, keeping the first tool output (the failing test) in view.
    keeps_more = LLMSummarizingCondenser(llm=summarizer, max_size=12, keep_first=4)
    agent = guard_agent(agent, guard, fallbacks=[keeps_more], on_decision=show)

    conversation = Conversation(agent=agent, workspace=tempfile.mkdtemp(prefix="memguard-openhands-"),
                                visualizer=None)
    conversation.send_message(TASK)
    print("running the agent (condensations are SOFT: past 12 events)...")
    conversation.run()
    final = [e for e in conversation.state.events if isinstance(e, MessageEvent) and e.source == "agent"][-1]
    print("final answer:", final.llm_message.content[0].text)
    print("explicit condensation request (HARD: no veto allowed)...")
    conversation.condense()
    guard.close()  # flushes audit work and closes the sinks
    stored = sum(isinstance(e, Condensation) for e in conversation.state.events)
    print(f"events: {len(conversation.state.events)} | condensations stored: {stored}")
    if args.audit_log:
        print("decisions written to", args.audit_log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
