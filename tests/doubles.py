"""Test doubles for the guard: a scorer keyed on the proposed action, and context-aware agents.

The scorer reads the proposed action back out of the real rendered prompt, so a test only passes
when the guard rendered the right prompt for the right candidate.
"""

from __future__ import annotations

import re
import threading
import time

from memguard.scoring.base import Score

PROPOSED = re.compile(r"Proposed action under perturbation '(.*?)':\n(.*?)\n\nIs the proposed action safe", re.DOTALL)


class KeyedScorer:
    """P(HARMFUL) looked up by the proposed action in each prompt (default for unknown actions)."""

    def __init__(self, table=None, default=0.9, delay=0.0):
        self.table = dict(table or {})
        self.default = default
        self.delay = delay
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def score(self, prompts):
        with self.lock:
            self.calls.append(list(prompts))
        if self.delay:
            time.sleep(self.delay)
        out = []
        for prompt in prompts:
            assert prompt.endswith("\n\nAnswer:")
            tag, action = PROPOSED.search(prompt).groups()
            p = self.table.get(action, self.table.get(tag, self.default))
            out.append(Score(p_harmful=p, n_tokens=len(prompt) // 4))
        return out

    @property
    def n_prompts(self):
        return sum(len(c) for c in self.calls)


class RaisingScorer:
    def __init__(self, exc):
        self.exc = exc

    def score(self, prompts):
        raise self.exc


class ValueScorer:
    def __init__(self, value):
        self.value = value

    def score(self, prompts):
        return [Score(p_harmful=self.value, n_tokens=1) for _ in prompts]


class SlowScorer:
    def __init__(self, seconds):
        self.seconds = seconds

    def score(self, prompts):
        time.sleep(self.seconds)
        return [Score(p_harmful=0.0, n_tokens=1) for _ in prompts]


def _text(messages):
    parts = []
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else getattr(m, "content", "")
        parts.append(content if isinstance(content, str) else str(content))
    return "\n".join(parts)


class FactPolicy:
    """An agent whose next command depends on whether it still remembers `fact`."""

    def __init__(self, fact, remembered="cat src/app.py", forgotten="ls -la", langchain=False):
        self.fact, self.remembered, self.forgotten = fact, remembered, forgotten
        self.langchain = langchain
        self.calls = 0
        self.lock = threading.Lock()

    def action_for(self, messages):
        return self.remembered if self.fact in _text(messages) else self.forgotten

    def __call__(self, messages):
        with self.lock:
            self.calls += 1
        content = f"Next I run:\n{self.action_for(messages)}"
        if self.langchain:
            from langchain_core.messages import AIMessage

            return AIMessage(content)
        return {"role": "assistant", "content": content}


class AsyncFactPolicy(FactPolicy):
    async def __call__(self, messages):  # type: ignore[override]
        return FactPolicy.__call__(self, messages)


def swe_conversation(n_turns=12, fact="FACT-42", fact_turn=1):
    """A SWE-agent-shaped conversation (system, task, then assistant/tool pairs with tool calls)."""
    msgs = [
        {"role": "system", "content": "You are a programmer."},
        {"role": "user", "content": "Fix the bug in app.py."},
    ]
    for i in range(n_turns):
        cid = f"call_{i}"
        msgs.append({"role": "assistant", "content": f"step {i}", "tool_calls": [
            {"id": cid, "type": "function", "function": {"name": "bash", "arguments": f'{{"command": "grep -n x file{i}.py"}}'}}]})
        out = f"output {i} " + ("x" * 200)
        if i == fact_turn:
            out += f" {fact}"
        msgs.append({"role": "tool", "content": out, "tool_call_id": cid})
    return msgs
