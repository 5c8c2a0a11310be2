"""A two-agent SDK run for the tests: a researcher looks the code up and hands off to a reporter.

The researcher (ScriptedModel) calls the `lookup` tool, then `transfer_to_reporter`. The
reporter states the launch code when its input still shows it, and otherwise asks the user.
`remove_all_tools` as the handoff's input filter drops the tool report, so the reporter no longer
sees the code; `nest_handoff_history` folds the transcript into one message that keeps it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agents import Agent, Model, RunConfig, Runner, handoff
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call

from oa_agent import FACT, lookup, run_config

TASKS = ("Find the launch code for project alpha and report it.", "Find project alpha's launch code for me.",
         "Look up the alpha launch code, then have it reported.")
AGAIN = ("Check it once more and report it.", "One last check, please.")
"""Later turns of the same conversation: each looks the code up again and hands off again."""
RESEARCHER = "You research. Use lookup, then transfer to the reporter."
REPORTER = "You report what was found."


def respond(call: ModelCall) -> list[Any]:
    items = list(call.input) if isinstance(call.input, list) else [{"role": "user", "content": call.input}]
    text = json.dumps(items, default=str)
    if call.system_instructions == REPORTER:
        if FACT in text:
            return [assistant_message(f"The launch code is {FACT}.", item_id="msg_report")]
        return [assistant_message("I could not find the launch code; please ask again.", item_id="msg_report")]
    last_user = max((n for n, i in enumerate(items) if isinstance(i, dict) and i.get("role") == "user"), default=0)
    looked_up = any(isinstance(i, dict) and i.get("type") == "function_call_output" for i in items[last_user:])
    if not looked_up:
        return [function_call("lookup", {"topic": "alpha"}, call_id="call_lookup")]
    return [function_call("transfer_to_reporter", {}, call_id="call_transfer")]


def scripted_model(steps: int = 60) -> ScriptedModel:
    return ScriptedModel([ModelStep.respond(respond) for _ in range(steps)])


def make_agents(model: Model, input_filter: Any = None) -> Agent[Any]:
    """The researcher, whose one handoff goes to the reporter (through `input_filter`, if given)."""
    reporter = Agent(name="reporter", instructions=REPORTER, model=model)
    to_reporter = handoff(reporter, input_filter=input_filter) if input_filter is not None else reporter
    return Agent(name="researcher", instructions=RESEARCHER, model=model, tools=[lookup], handoffs=[to_reporter])


def turns(conversation: int = 0, *, count: int = 1) -> list[str]:
    """The first `count` user turns of conversation `conversation`."""
    return [TASKS[conversation], *AGAIN][:count]


def run(agent: Agent[Any], config: RunConfig, *, mode: str, task: str = TASKS[0]) -> list[Any]:
    if mode == "sync":
        return Runner.run_sync(agent, task, run_config=config).to_input_list()
    return asyncio.run(arun(agent, config, task=task))


async def arun(agent: Agent[Any], config: RunConfig, *, task: str = TASKS[0]) -> list[Any]:
    return (await Runner.run(agent, task, run_config=config)).to_input_list()


__all__ = ["AGAIN", "REPORTER", "TASKS", "arun", "make_agents", "run", "run_config", "scripted_model", "turns"]
