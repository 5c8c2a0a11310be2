"""Guard a Pydantic AI agent's memory compaction with memguard.

Offline (the default) everything is local and nothing is downloaded:
- the agent's model is a scripted `FunctionModel` whose next command depends on whether it still
  remembers a fact from its first tool result;
- the compaction is pydantic-ai-harness's `SlidingWindowCompaction` (it drops that tool result);
- MemRM is a *tiny random* model built on the fly with `memguard.testing.build_tiny_rm`: its
  scores are meaningless, it only exercises the real loading and scoring path. Pass
  ``--scorer oracle`` for a labelled scorer double that plays a well-behaved RM instead
  (harmful whenever the agent's action shows it forgot), to see vetoes and fallbacks.

With real models (needs the provider's package and key, and the RM weights or hub access):

    python examples/pydantic_ai_agent.py --model openai:gpt-4.1-mini \\
        --rm-base Qwen/Qwen3-1.7B-Base --rm-adapter MemGym/memgym-rm-1p7b

`--mode audit` runs the same capability with `Guard(mode="audit")`: the compaction always
applies, and every compaction is scored in the background into `--audit-log`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai_harness.compaction import ClearToolResults, SlidingWindowCompaction
from pydantic_ai_memguard import MemGuardCompaction

from memguard import Decision, Guard, JSONLSink, LoggingSink, ObservationMasking, Score

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


class OracleScorer:
    """A LABELLED SCORER DOUBLE, not MemRM: harmful iff the proposed action shows forgetting."""

    def score(self, prompts: list[str]) -> list[Score]:
        out = []
        for prompt in prompts:
            proposed = prompt.rsplit("Proposed action under perturbation", 1)[1]
            forgot = "ls -la" in proposed or "lost track" in proposed
            out.append(Score(p_harmful=0.97 if forgot else 0.03, n_tokens=len(prompt) // 4))
        return out


def bash(command: str) -> str:
    """Run a shell command in the repository."""
    found = re.search(r"step (\d+)", command)
    step = found.group(1) if found else "?"
    return f"step {step} ok" + (f"; pytest says {FACT}" if step == "1" else "")


# --------------------------------------------------------------------------- wiring


def load_scorer(args: argparse.Namespace) -> Any:
    if args.scorer == "oracle":
        return OracleScorer()
    from memguard.scoring.local import MemRM

    if args.rm_base:
        return MemRM.from_pretrained(base=args.rm_base, adapter=args.rm_adapter, subfolder=args.rm_subfolder)
    from memguard.testing import build_tiny_rm

    root = Path(tempfile.mkdtemp(prefix="memguard-tiny-rm-"))
    build_tiny_rm(root)
    print(f"[offline] tiny RANDOM MemRM built in {root} (scores are meaningless)", file=sys.stderr)
    return MemRM.from_pretrained(base=str(root / "base"), adapter=str(root / "adapter"), subfolder="checkpoint-500")


def show(decision: Decision) -> None:
    if decision.pending:  # audit mode: the compaction is applied, the score arrives in the log
        print(f"  memguard: audit    {decision.strategy} applied, scoring in the background")
    else:
        print(f"  memguard: {decision.verdict.value:8s} p_harmful={decision.p_harmful} chosen={decision.strategy}")


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
    parser.add_argument("--audit-log", default="memguard-audit.jsonl")
    parser.add_argument("--task", default=TASK)
    args = parser.parse_args(argv)

    model: Any = args.model or FunctionModel(scripted_agent, model_name="scripted-agent")
    guard = Guard(load_scorer(args), mode=args.mode, sinks=[LoggingSink(), JSONLSink(args.audit_log)],
                  fallbacks=[ObservationMasking(keep_last=4)])
    # Instead of capabilities=[SlidingWindowCompaction(...)]: the same capability, guarded. Tried in
    # order when it is judged harmful: ClearToolResults, then the guard's own ObservationMasking.
    compaction = MemGuardCompaction(SlidingWindowCompaction(max_messages=6, keep_messages=3), guard,
                                    fallbacks=[ClearToolResults(max_messages=100, keep_pairs=2)], on_decision=show)
    agent = Agent(model, instructions="You are a careful programmer.", capabilities=[compaction])
    agent.tool_plain(bash)

    result = agent.run_sync(args.task)
    guard.close()  # flushes audit work and closes the sinks
    print("final answer:", result.output)
    print("messages in history:", len(result.all_messages()), "| model requests:", result.usage.requests,
          "| decisions written to", args.audit_log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
