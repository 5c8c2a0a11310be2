"""One review's candidate requests, the agent probed on them, and the winner found again.

Every candidate of a review is a compaction event (the proposal, or a fallback summarizer's) or
none (the full context). `Candidates` builds each one's request contents (the caller says how:
ADK's builder against the real request in-flow, over the session after it), shows it to memguard
(`ContentBridge`), probes the agent's model on it when the guard asks, and maps the guard's
decision back to the event to commit and the probe to serve.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.adk.events.event import Event
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import types
from memguard import Decision, Message, Verdict

from google_adk_memguard.probing import probe
from google_adk_memguard.rebuild import probe_request
from google_adk_memguard.views import ContentBridge, response_view

__all__ = ["Candidate", "Candidates", "summary_of"]

ContentsFor = Callable[[Event | None], Awaitable[list[types.Content]]]


def summary_of(event: Event | None) -> types.Content | None:
    """The summary content a compaction event carries (None: not a compaction)."""
    compaction = event.actions.compaction if event is not None and event.actions else None
    return compaction.compacted_content if compaction is not None else None


@dataclass
class Candidate:
    """One context the guard may choose: its compaction (None: the full context), contents and view."""

    compaction: Event | None
    contents: list[types.Content]
    view: list[Message]
    response: LlmResponse | None = None


def _same(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


class Candidates:
    """The candidates of one review and the probes run on them.

    Args:
        template: The request every probe copies (model, config, tools): the step's real request.
        contents_for: Builds the request contents with a compaction applied (None: without).
        bridge: Shows contents to memguard (summaries included).
        model: The model to probe.
        stream: Probe streamed (the run streams).
        agent_name: The agent whose call a probe stands in for (ADK labels calls with it).
    """

    def __init__(self, template: LlmRequest, contents_for: ContentsFor, bridge: ContentBridge, model: BaseLlm,
                 *, stream: bool, agent_name: str | None) -> None:
        self.template = template
        self.contents_for = contents_for
        self.bridge = bridge
        self.model = model
        self.stream = stream
        self.agent_name = agent_name
        self.items: list[Candidate] = []
        self.probes: list[tuple[Message, LlmResponse]] = []

    async def add(self, compaction: Event | None) -> Candidate:
        """The candidate for `compaction` (None: the full context), built and shown once."""
        summary = summary_of(compaction)
        if summary is not None and summary not in self.bridge.summaries:
            self.bridge.summaries.append(summary)
        contents = await self.contents_for(compaction)
        candidate = Candidate(compaction, contents, self.bridge.to_view(contents))
        self.items.append(candidate)
        return candidate

    def find(self, messages: Sequence[Any]) -> Candidate | None:
        return next((item for item in self.items if _same(item.view, messages)), None)

    async def policy(self, messages: Sequence[Any]) -> Message:
        """The guard's agent: probe the model on the request for `messages`."""
        candidate = self.find(messages)
        contents = candidate.contents if candidate is not None else self.bridge.from_view(messages)
        response = await probe(self.model, probe_request(self.template, contents, self.agent_name), stream=self.stream)
        if candidate is not None and candidate.response is None:
            candidate.response = response
        shown = response_view(response)
        self.probes.append((shown, response))
        return shown

    def response_for(self, message: Any) -> LlmResponse | None:
        """The probe whose view the guard returned as the decision's response."""
        return next((response for shown, response in self.probes if shown is message), None)

    def chosen(self, decision: Decision) -> Candidate | None:
        """The candidate the decision commits (None: a veto, or messages no candidate has)."""
        if decision.verdict is Verdict.VETO:
            return None
        candidate = self.find(decision.messages)
        return candidate if candidate is not None and candidate.compaction is not None else None

    def served(self, decision: Decision, fallback: Candidate | None) -> LlmResponse | None:
        """The probe to serve as the step's response: the decision's, else `fallback`'s."""
        response = self.response_for(decision.response)
        if response is None and fallback is not None:
            response = fallback.response
        return response
