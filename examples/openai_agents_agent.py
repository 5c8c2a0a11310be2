"""Guard an OpenAI Agents SDK agent's history trimming with memguard.

Offline (the default) everything is local and nothing is downloaded or sent:
- the agent is the SDK's own `agents.testing.ScriptedModel`, whose next step depends on whether
  the launch code from its first tool report is still in its input;
- the trimming is the SDK's `ToolOutputTrimmer` (older tool reports become 60-character
  previews, which hides the code), run as `RunConfig(call_model_input_filter=...)`;
- MemRM is a *tiny random* model built on the fly with `memguard.testing.build_tiny_rm`: its
  scores are meaningless, it only exercises the real loading and scoring path. Pass
  ``--scorer oracle`` for a labelled scorer double that plays a well-behaved RM instead
  (harmful whenever the agent's action shows it lost the code), to see vetoes.

With real models (needs OPENAI_API_KEY, and the RM weights or hub access):

    python examples/openai_agents_agent.py --model gpt-4.1-mini \\
        --rm-base Qwen/Qwen3-1.7B-Base --rm-adapter MemGym/memgym-rm-1p7b

`--mode audit` keeps the trimming as it is and scores every trim in the background into
`--audit-log`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from agents import Agent, Model, RunConfig, Runner, function_tool, set_tracing_disabled
from agents.extensions import ToolOutputTrimmer
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call
from memguard import Guard, JSONLSink
from memguard.testing import MarkerScorer

from openai_agents_memguard import MemGuardInputFilter

FACT = "ALPHA-7731"
TURNS = ("Look up the launch code for project alpha.", "Check the weather.", "What was the launch code?")
INSTRUCTIONS = "You are a careful assistant. Use the lookup tool for facts; never guess."


# --------------------------------------------------------------------------- offline stand-ins


@function_tool
def lookup(topic: str) -> str:
    """Look a topic up in the archive."""
    filler = "Background: " + "archived notes. " * 40
    return f"Report on {topic}. {filler}" + (f"The launch code is {FACT}." if topic == "alpha" else "Sunny.")


def scripted_step(call: ModelCall) -> list[Any]:
    """The offline agent: answers from memory while the code is in its input, looks it up again otherwise."""
    items = list(call.input) if isinstance(call.input, list) else [{"role": "user", "content": call.input}]
    last_user = max(i for i, item in enumerate(items) if item.get("role") == "user")
    ask, after = items[last_user]["content"], items[last_user + 1:]
    looked_up = any(item.get("type") == "function_call_output" for item in after)
    n = len(items)
    if ask == TURNS[0]:
        if not looked_up:
            return [function_call("lookup", {"topic": "alpha"}, call_id=f"call_{n}")]
        return [assistant_message("Noted the launch code.", item_id=f"msg_{n}")]
    if ask == TURNS[1]:
        if not looked_up:
            return [function_call("lookup", {"topic": "weather"}, call_id=f"call_{n}")]
        return [assistant_message("It is sunny.", item_id=f"msg_{n}")]
    if FACT in json.dumps(items):
        return [assistant_message(f"The launch code is {FACT}.", item_id=f"msg_{n}")]
    return [function_call("lookup", {"topic": "alpha"}, call_id=f"call_{n}")]


def oracle_scorer() -> MarkerScorer:
    """A LABELLED SCORER DOUBLE, not MemRM: harmful iff the proposed action looks the code up again."""
    return MarkerScorer(["lookup({'topic': 'alpha'})"])


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


def load_model(args: argparse.Namespace) -> Model:
    if args.model:
        from agents import MultiProvider

        return MultiProvider().get_model(args.model)
    set_tracing_disabled(True)  # offline: nothing to export traces to
    return ScriptedModel([ModelStep.respond(scripted_step) for _ in range(100)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["enforce", "audit"], default="enforce")
    parser.add_argument("--scorer", choices=["memrm", "oracle"], default="memrm")
    parser.add_argument("--model", default=os.environ.get("MEMGUARD_OPENAI_MODEL"),
                        help="an OpenAI model name, e.g. gpt-4.1-mini (default: offline scripted model)")
    parser.add_argument("--rm-base", default=os.environ.get("MEMGUARD_RM_BASE"),
                        help="MemRM base (local path or hub id); default: tiny random RM")
    parser.add_argument("--rm-adapter", default=os.environ.get("MEMGUARD_RM_ADAPTER", "MemGym/memgym-rm-1p7b"))
    parser.add_argument("--rm-subfolder", default="checkpoint-500")
    parser.add_argument("--audit-log", default=None, help="also write every decision to this JSONL audit log")
    args = parser.parse_args(argv)

    model = load_model(args)
    guard = Guard(load_scorer(args), mode=args.mode, sinks=[JSONLSink(args.audit_log)] if args.audit_log else [])
    trimmer = ToolOutputTrimmer(recent_turns=1, max_output_chars=300, preview_chars=60)
    guarded = MemGuardInputFilter(
        trimmer, guard, conversation_id="example-chat",
        on_decision=lambda d: print(f"  memguard: {d.summary()}"),
    )
    # The review runs at the wrapped model's call, on the run's exact request (settings, tools,
    # tool_choice), and its winning probe is the call's answer: one extra model call per review.
    agent = Agent(name="archivist", instructions=INSTRUCTIONS, model=guarded.wrap_model(model), tools=[lookup])
    config = RunConfig(call_model_input_filter=guarded, tracing_disabled=not args.model)

    history: list[Any] = []
    for turn in TURNS:
        print(f"user: {turn}")
        result = Runner.run_sync(agent, [*history, {"role": "user", "content": turn}], run_config=config)
        history = result.to_input_list()
        lookups = sum(1 for item in result.new_items if item.type == "tool_call_item")
        print(f"agent ({lookups} lookup(s)): {result.final_output}")
    guard.close()  # flushes audit work and closes the sinks
    calls = len(model.calls) if isinstance(model, ScriptedModel) else "n/a"
    print(f"model calls: {calls}" + (f" | decisions written to {args.audit_log}" if args.audit_log else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
