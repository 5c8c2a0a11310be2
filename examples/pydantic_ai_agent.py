"""Guard a Pydantic AI agent's memory compaction with memguard.

Offline (the default) everything is local and nothing is downloaded:
- the agent's model is a scripted `FunctionModel` whose next command depends on whether it still
  remembers a fact from its first tool result;
- the compaction drops that tool result: on pydantic-ai-slim 2.78+ a summarizer on Pydantic AI's
  core `compact_history` hook (`--hook compact_history`, the default there), else
  pydantic-ai-harness's `SlidingWindowCompaction` in `before_model_request` (`--hook
  before_model_request`, which needs pydantic-ai-harness, i.e. pydantic-ai-slim 2.62);
- MemRM is a *tiny random* model built on the fly with `memguard.testing.build_tiny_rm`: its
  scores are meaningless, it only exercises the real loading and scoring path. Pass
  ``--scorer oracle`` for a labelled scorer double that plays a well-behaved RM instead
  (harmful whenever the agent's action shows it forgot), to see vetoes and fallbacks.

With real models (needs the provider's package and key, and the RM weights or hub access):

    python examples/pydantic_ai_agent.py --model openai:gpt-4.1-mini \\
        --rm-base Qwen/Qwen3-1.7B-Base --rm-adapter MemGym/memgym-rm-1p7b

`--mode audit` runs the same capability with `Guard(mode="audit")`: the compaction always
applies, and every compaction is scored in the background (into `--audit-log`
when you pass one).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import (
    CompactionPart,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import RunContext
from pydantic_ai_memguard import MemGuardCompaction

from memguard import Decision, Guard, JSONLSink, ObservationMasking
from memguard.testing import MarkerScorer

FACT = "the failing test is tests/test_dates.py::test_leap_year"
TASK = "Find the failing test, then fix it."
N_STEPS = 6


# --------------------------------------------------------------------------- offline stand-ins


def scripted_agent(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Runs `echo step k` while it remembers FACT, `ls -la` once it forgot; then answers."""
    returns = [p.model_response_str() for m in messages if isinstance(m, ModelRequest)
               for p in m.parts if isinstance(p, ToolReturnPart)]
    text = "\n".join([*returns, *(str(getattr(p, "content", "")) for m in messages for p in m.parts)])
    steps = [int(s) for r in returns for s in re.findall(r"step (\d+)", r)]
    k = max(steps, default=0)
    if k >= N_STEPS:
        return ModelResponse(parts=[TextPart("Done: " + ("fixed " + FACT if FACT in text else "I lost track of the failing test."))])
    command = f"echo step {k + 1}" if FACT in text or k == 0 else f"ls -la  # step {k + 1}"
    return ModelResponse(parts=[ToolCallPart("bash", {"command": command}, tool_call_id=f"call_{k + 1}")])


def oracle_scorer() -> MarkerScorer:
    """A LABELLED SCORER DOUBLE, not MemRM: harmful iff the proposed action shows forgetting."""
    return MarkerScorer(["ls -la", "lost track"])


def bash(command: str) -> str:
    """Run a shell command in the repository."""
    found = re.search(r"step (\d+)", command)
    step = found.group(1) if found else "?"
    return f"step {step} ok" + (f"; pytest says {FACT}" if step == "1" else "")


class RecentSummary(AbstractCapability[None]):
    """A compaction on the core `compact_history` hook (pydantic-ai-slim 2.78+), deterministic offline.

    Past `max_messages` it asks for compaction; then it keeps the latest tool exchange behind a
    summary that keeps the task but not the details of older tool results (so it loses the fact).
    """

    def __init__(self, max_messages: int = 6) -> None:
        self.max_messages = max_messages

    async def before_model_request(self, ctx: RunContext[None], request_context: ModelRequestContext) -> Any:
        if len(ctx.messages) > self.max_messages:
            ctx.request_compaction(reason="threshold")
        return request_context

    async def compact_history(self, ctx: RunContext[None], request: Any) -> Any:
        from pydantic_ai.capabilities.compaction import CompactionResult

        done = sum(isinstance(m, ModelResponse) for m in request.messages)
        summary = CompactionPart(content=f"The task: {TASK} {done} shell commands were run so far.")
        return CompactionResult(messages=[ModelRequest(parts=[summary]), *request.messages[-2:]], part=summary,
                                handler="recent-summary")


def has_compact_history() -> bool:
    return hasattr(AbstractCapability, "compact_history")


def compaction_for(hook: str) -> tuple[Any, list[Any]]:
    """The compaction to guard and its own fallbacks (tried before the guard's ObservationMasking)."""
    if hook == "compact_history":
        return RecentSummary(max_messages=6), []
    from pydantic_ai_harness.compaction import ClearToolResults, SlidingWindowCompaction

    return SlidingWindowCompaction(max_messages=6, keep_messages=3), [ClearToolResults(max_messages=100, keep_pairs=2)]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["enforce", "audit"], default="enforce")
    parser.add_argument("--scorer", choices=["memrm", "oracle"], default="memrm")
    parser.add_argument("--model", default=os.environ.get("MEMGUARD_PAI_MODEL"),
                        help="Pydantic AI model string, e.g. openai:gpt-4.1-mini (default: offline scripted model)")
    parser.add_argument("--rm-base", default=os.environ.get("MEMGUARD_RM_BASE"),
                        help="MemRM base (local path or hub id); default: tiny random RM")
    parser.add_argument("--rm-adapter", default=os.environ.get("MEMGUARD_RM_ADAPTER", "MemGym/memgym-rm-1p7b"))
    parser.add_argument("--rm-subfolder", default="checkpoint-500")
    parser.add_argument("--audit-log", default=None, help="also write every decision to this JSONL audit log")
    parser.add_argument("--task", default=TASK)
    parser.add_argument("--hook", choices=["compact_history", "before_model_request"],
                        default="compact_history" if has_compact_history() else "before_model_request",
                        help="the compaction hook to guard (default: compact_history where Pydantic AI has it)")
    args = parser.parse_args(argv)

    model: Any = args.model or FunctionModel(scripted_agent, model_name="scripted-agent")
    guard = Guard(load_scorer(args), mode=args.mode, sinks=[JSONLSink(args.audit_log)] if args.audit_log else [],
                  fallbacks=[ObservationMasking(keep_last=4)])
    # Instead of capabilities=[inner]: the same capability, guarded. Tried in order when it is judged
    # harmful: the inner's own fallbacks (ClearToolResults with the harness), then the guard's ObservationMasking.
    inner, fallbacks = compaction_for(args.hook)
    compaction = MemGuardCompaction(inner, guard, fallbacks=fallbacks, on_decision=show)
    agent = Agent(model, instructions="You are a careful programmer.", capabilities=[compaction])
    agent.tool_plain(bash)

    result = agent.run_sync(args.task)
    guard.close()  # flushes audit work and closes the sinks
    print("final answer:", result.output)
    print("messages in history:", len(result.all_messages()), "| model requests:", result.usage.requests)
    if args.audit_log:
        print("decisions written to", args.audit_log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
