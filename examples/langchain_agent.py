"""Guard a LangChain agent's memory compaction with memguard.

Offline (the default) everything is local and nothing is downloaded:
- the agent is a scripted tool-calling chat model whose next command depends on whether it
  still remembers a fact from its first tool result;
- the summariser is a fixed fake model (its summary drops the fact);
- MemRM is a *tiny random* model built on the fly with `memguard.testing.build_tiny_rm`: its
  scores are meaningless, it only exercises the real loading and scoring path. Pass
  ``--scorer oracle`` for a labelled scorer double that plays a well-behaved RM instead
  (harmful whenever the agent's action shows it forgot), to see vetoes and fallbacks.

With real models (needs the provider's package and key, and the RM weights or hub access):

    python examples/langchain_agent.py --model openai:gpt-4.1-mini \\
        --rm-base Qwen/Qwen3-1.7B-Base --rm-adapter MemGym/memgym-rm-1p7b

`--mode audit` shows the callback drop-in instead: the agent's own SummarizationMiddleware runs
untouched and every compaction is scored in the background (into `--audit-log`
when you pass one).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import SummarizationMiddleware
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from memguard import Guard, JSONLSink, ObservationMasking
from memguard.testing import MarkerScorer

from langchain_memguard import MemGuardCallbackHandler, MemGuardMiddleware

FACT = "the failing test is tests/test_dates.py::test_leap_year"
TASK = "Find the failing test, then fix it."


# --------------------------------------------------------------------------- offline stand-ins


class ScriptedAgent(BaseChatModel):
    """Runs `echo step k` while it remembers FACT, `ls -la` once it forgot; then answers."""

    n_steps: int = 6

    @property
    def _llm_type(self) -> str:
        return "scripted-agent"

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedAgent:
        return self

    def _generate(self, messages: list[Any], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        text = "\n".join(str(m.content) for m in messages)
        steps = [int(s) for m in messages if isinstance(m, ToolMessage) for s in re.findall(r"step (\d+)", str(m.content))]
        k = max(steps, default=0)
        if k >= self.n_steps:
            message = AIMessage(content="Done: " + ("fixed " + FACT if FACT in text else "I lost track of the failing test."))
        else:
            command = f"echo step {k + 1}" if FACT in text or k == 0 else f"ls -la  # step {k + 1}"
            message = AIMessage(content="", tool_calls=[{"name": "bash", "args": {"command": command}, "id": f"call_{k + 1}"}])
        return ChatResult(generations=[ChatGeneration(message=message)])


class FakeSummarizer(BaseChatModel):
    @property
    def _llm_type(self) -> str:
        return "fake-summarizer"

    def _generate(self, messages: list[Any], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="The agent ran some commands."))])


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


def load_models(args: argparse.Namespace) -> tuple[Any, Any]:
    if args.model:
        from langchain.chat_models import init_chat_model

        model = init_chat_model(args.model)
        return model, init_chat_model(args.summary_model or args.model)
    return ScriptedAgent(), FakeSummarizer()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["enforce", "audit"], default="enforce")
    parser.add_argument("--scorer", choices=["memrm", "oracle"], default="memrm")
    parser.add_argument("--model", default=os.environ.get("MEMGUARD_CHAT_MODEL"),
                        help="init_chat_model string, e.g. openai:gpt-4.1-mini (default: offline scripted model)")
    parser.add_argument("--summary-model", default=None)
    parser.add_argument("--rm-base", default=os.environ.get("MEMGUARD_RM_BASE"),
                        help="MemRM base (local path or hub id); default: tiny random RM")
    parser.add_argument("--rm-adapter", default=os.environ.get("MEMGUARD_RM_ADAPTER", "MemGym/memgym-rm-1p7b"))
    parser.add_argument("--rm-subfolder", default="checkpoint-500")
    parser.add_argument("--audit-log", default=None, help="also write every decision to this JSONL audit log")
    parser.add_argument("--task", default=TASK)
    args = parser.parse_args(argv)

    model, summarizer = load_models(args)
    scorer = load_scorer(args)
    summarization = SummarizationMiddleware(model=summarizer, trigger=("messages", 6), keep=("messages", 2))
    sinks = [JSONLSink(args.audit_log)] if args.audit_log else []
    tools = [bash]

    if args.mode == "enforce":
        guard = Guard(scorer, sinks=sinks, fallbacks=[ObservationMasking(keep_last=4)])
        fallback = SummarizationMiddleware(model=summarizer, trigger=("messages", 6), keep=("messages", 8))
        middleware = MemGuardMiddleware(summarization, guard, fallbacks=[fallback],
                                        on_decision=lambda d: print(f"  memguard: {d.summary()}"))
        agent = create_agent(model, tools=tools, middleware=[middleware])
        config: dict[str, Any] = {}
    else:
        guard = Guard(scorer, mode="audit", sinks=sinks)
        agent = create_agent(model, tools=tools, middleware=[summarization])
        # The agent's own model: each probe is sent with the agent's tools and settings at that step.
        config = {"callbacks": [MemGuardCallbackHandler(guard, probe_model=model)]}

    result = agent.invoke({"messages": [HumanMessage(args.task)]}, config)
    guard.close()  # flushes audit work and closes the sinks
    print("final answer:", result["messages"][-1].content)
    print("messages in state:", len(result["messages"]))
    if args.audit_log:
        print("decisions written to", args.audit_log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
