"""Guard a Google ADK agent's events compaction with memguard.

Offline (the default) everything is local and nothing reaches the network or Google:
- the agent's model is a scripted `BaseLlm` whose next command depends on whether it still sees
  the failing test named in its first tool output;
- the compaction is ADK's own `LlmEventSummarizer` (token threshold: in-flow before a model call,
  and after the run), over a scripted summary model whose summary leaves the test's name out;
  the fallback is the same summarizer with a prompt that keeps identifiers verbatim;
- the scorer is a LABELLED SCORER DOUBLE, not MemRM: harmful exactly when the agent's next action
  under the compacted context shows it forgot. Pass ``--rm-url`` to score with a MemRM served by
  vLLM (`RemoteMemRM`), or ``--rm-base`` (with memguard[local]) to load one in-process.

    python examples/google_adk_agent.py                 # enforce: the lossy summary is replaced
    python examples/google_adk_agent.py --mode audit    # ADK's own compaction, scored aside
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from collections.abc import AsyncGenerator
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.apps.app import App, EventsCompactionConfig
from google.adk.apps.llm_event_summarizer import LlmEventSummarizer
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import InMemoryRunner
from google.genai import types
from google_adk_memguard import guard_app

from memguard import Decision, Guard, JSONLSink, Score

TEST = "tests/test_dates.py::test_leap_year"
TURNS = ("CI is red: find the failing test and fix it.", "Double-check the fix.")
PLAN = ("pytest -q", "cat src/dates.py", "cat tests/test_dates.py", "fix src/dates.py", f"pytest -q {TEST}")
KEEP_VERBATIM = (
    "Summarize the conversation below. Keep every file name, test id and error message verbatim.\n\n"
    "{conversation_history}"
)


# --------------------------------------------------------------------------- offline stand-ins


def shell(command: str, step: int) -> str:
    """Run a shell command in the repository (`step`: the agent's step number, for its notes)."""
    filler = " ".join(["(log line)"] * 60)
    if command == "pytest -q":
        return f"[step {step}] FAILED {TEST} - AssertionError: 2024 is a leap year\n1 failed, 41 passed\n{filler}"
    if command.startswith("pytest -q tests/"):
        return f"[step {step}] 1 passed"
    return f"[step {step}] {command}: done\n{filler}"


def _text(contents: list[types.Content]) -> str:
    return "\n".join(str(part.text or part.function_call or part.function_response or "")
                     for content in contents for part in content.parts or ())


def _steps(text: str) -> int:
    """The agent's progress notes: tool outputs say ``[step k]``, a summary ``after k steps``."""
    found = [int(a or b) for a, b in re.findall(r"\[step (\d+)\]|after (\d+) steps", text)]
    return max(found, default=0)


class ScriptedModel(BaseLlm):
    """The offline agent model and summarizer model in one (`BaseLlm`, no network)."""

    model: str = "scripted"

    async def generate_content_async(self, llm_request: LlmRequest,
                                     stream: bool = False) -> AsyncGenerator[LlmResponse, None]:
        text = _text(list(llm_request.contents))
        if not (llm_request.config and llm_request.config.tools):  # a summarization request
            keep = f" Failing test: {TEST}." if "verbatim" in text and TEST in text else ""
            summary = f"Summary: investigated a date bug in src/dates.py, after {_steps(text)} steps.{keep}"
            yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=summary)]))
            return
        usage = types.GenerateContentResponseUsageMetadata(prompt_token_count=len(text) // 4)
        yield LlmResponse(content=next_turn(list(llm_request.contents), text), usage_metadata=usage)


def next_turn(contents: list[types.Content], text: str) -> types.Content:
    """What the scripted agent does next: follow the plan while it remembers the failing test."""
    remembers = TEST in text
    answer = f"Fixed {TEST}." if remembers else "I lost track of the failing test."
    forgetful = "pytest -q  # which test was it?"
    k = _steps(text)
    if TURNS[1] in text:  # the second request: one check, then the answer
        asked = max(i for i, content in enumerate(contents) if TURNS[1] in _text([content]))
        checked = any(part.function_response for content in contents[asked + 1:] for part in content.parts or ())
        if checked or (contents and contents[-1].role == "model"):
            return types.Content(role="model", parts=[types.Part(text=answer)])
        command = f"pytest -q {TEST}" if remembers else forgetful
    elif k >= len(PLAN) or (contents and contents[-1].role == "model"):
        return types.Content(role="model", parts=[types.Part(text=answer)])
    else:
        command = PLAN[k] if remembers or k == 0 else forgetful
    call = types.FunctionCall(name="shell", args={"command": command, "step": k + 1})
    return types.Content(role="model", parts=[types.Part(function_call=call)])


class ForgettingOracle:
    """A LABELLED SCORER DOUBLE, not MemRM: harmful iff the proposed action shows the agent forgot."""

    def score(self, prompts: list[str]) -> list[Score]:
        out = []
        for prompt in prompts:
            proposed = prompt.rsplit("Proposed action under perturbation", 1)[1]
            forgot = bool(re.search(r"which test was it|lost track", proposed))
            out.append(Score(p_harmful=0.97 if forgot else 0.03, n_tokens=len(prompt) // 4))
        return out


# --------------------------------------------------------------------------- wiring


def load_scorer(args: argparse.Namespace) -> Any:
    if args.rm_url:
        from memguard import RemoteMemRM

        return RemoteMemRM(args.rm_url, model=args.rm_model)
    if args.rm_base:
        from memguard.scoring.local import MemRM

        return MemRM.from_pretrained(base=args.rm_base, adapter=args.rm_adapter, subfolder="checkpoint-500")
    return ForgettingOracle()


def show(decision: Decision) -> None:
    if decision.pending:
        print(f"  memguard: {decision.verdict.value:8s} (scored in the background)")
    else:
        print(f"  memguard: {decision.summary()}")


async def converse(app: App) -> list[str]:
    runner = InMemoryRunner(app=app)
    await runner.session_service.create_session(app_name=app.name, user_id="dev", session_id="ci-fix")
    answers = []
    for turn in TURNS:
        print(f"user: {turn}")
        message = types.Content(role="user", parts=[types.Part(text=turn)])
        async for event in runner.run_async(user_id="dev", session_id="ci-fix", new_message=message):
            if event.is_final_response() and event.content and event.content.parts:
                answers.append(event.content.parts[0].text or "")
                print(f"agent: {answers[-1]}")
    return answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["enforce", "audit"], default="enforce")
    parser.add_argument("--rm-url", default=os.environ.get("MEMGUARD_RM_URL"),
                        help="a vLLM server serving MemRM (RemoteMemRM); default: the offline scorer double")
    parser.add_argument("--rm-model", default="memrm", help="the served LoRA adapter's name")
    parser.add_argument("--rm-base", default=os.environ.get("MEMGUARD_RM_BASE"),
                        help="MemRM base (local path or hub id) to load in-process (memguard[local])")
    parser.add_argument("--rm-adapter", default="MemGym/memgym-rm-1p7b")
    parser.add_argument("--audit-log", default=None, help="also write every decision to this JSONL audit log")
    args = parser.parse_args(argv)

    model = ScriptedModel()
    agent = LlmAgent(name="fixer", model=model, instruction="You fix failing tests.", tools=[shell])
    app = App(name="ci_fixer", root_agent=agent, events_compaction_config=EventsCompactionConfig(
        summarizer=LlmEventSummarizer(llm=model),  # the app's own compaction: a lossy summary
        token_threshold=300, event_retention_size=1, compaction_interval=100, overlap_size=0,
    ))
    guard = Guard(load_scorer(args), mode=args.mode, sinks=[JSONLSink(args.audit_log)] if args.audit_log else [])
    # Tried when the summary is judged harmful: the same summarizer, told to keep identifiers verbatim.
    guarded = guard_app(app, guard, on_decision=show,
                        fallbacks=[LlmEventSummarizer(llm=model, prompt_template=KEEP_VERBATIM)])
    asyncio.run(converse(guarded))
    guard.close()  # flushes audit work and closes the sinks
    assert guarded.events_compaction_config is not None
    print(f"reviews: {guarded.events_compaction_config.summarizer.stats()}")  # type: ignore[union-attr]
    if args.audit_log:
        print("decisions written to", args.audit_log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
