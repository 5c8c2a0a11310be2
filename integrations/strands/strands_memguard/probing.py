"""Asking the agent's model for its next step, and serving that answer as the real step.

A probe is the request the agent loop would send, on another context: the agent's model, system
prompt, tool specs and model state, streamed through `strands.event_loop.streaming.stream_messages`
(the loop's own normalisation) straight to ``model.stream`` - never through ``agent(...)``, which
would deadlock on the invocation lock and write to the run (its messages, metrics, traces and
callback handler). The probe runs on a copy of the model state and of the invocation state, so a
probe leaves nothing behind in the run.

`ProbeReplay` is an ``InvokeModelStage`` middleware: when the next model call of the agent is the
very request a probe already sent (same model and model settings, messages, system prompt, tool
specs, tool choice and output model), it replays the probe's events instead of calling the model, so a review before
a model call costs one extra call, not two. Any other call goes to the model as usual.
"""

from __future__ import annotations

import copy
import importlib
import logging
import weakref
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strands.event_loop.streaming import stream_messages
from strands.types.content import split_system_prompt

if TYPE_CHECKING:
    from strands import Agent
    from strands.models import Model

__all__ = ["AgentRequest", "ProbeRecord", "ProbeReplay", "invoke_model_stage"]

logger = logging.getLogger("memguard.strands")


def invoke_model_stage() -> Any:
    """The ``InvokeModelStage`` token: public in ``strands.middleware`` from 1.62, private before."""
    for module in ("strands.middleware", "strands._middleware.stages"):
        try:
            return importlib.import_module(module).InvokeModelStage
        except (ImportError, AttributeError):
            continue
    return None


def _config(model: Any) -> Any:
    """The model's settings as they are now (a copy: a later ``update_config`` must not change it)."""
    config = model.get_config()
    try:
        return copy.deepcopy(config)
    except Exception:  # noqa: BLE001 - a config holding a client: compared as the object itself
        return config


def _messages_key(messages: Sequence[Any]) -> list[tuple[Any, Any]]:
    """What a request sends of its messages (the loop strips everything but role and content)."""
    return [(message.get("role"), message.get("content")) for message in messages]


@dataclass
class ProbeRecord:
    """One probe: what it sent (to match a later request) and every event the model stream gave."""

    request: tuple[Any, ...]
    """The request's key (see `AgentRequest.key`)."""
    events: list[Any]
    """Every event the model stream gave, in order."""
    message: dict[str, Any]
    """The model's final message."""
    model_state_changed: bool
    """Whether the model changed its state while answering (such a probe is never replayed)."""

    def replay(self) -> list[Any]:
        """The events again, as fresh objects.

        Returns:
            Deep copies of `events` (the agent loop writes metadata into the message).
        """
        return copy.deepcopy(self.events)


@dataclass
class AgentRequest:
    """The model request the agent would send next, less its messages.

    Built from the agent at review time (`of`); `stream` sends it with any messages, straight to
    the model through the agent loop's own streaming call: never through ``agent(...)``, which
    would deadlock on the invocation lock and write to the run. A probe runs on copies of the
    model state and of the invocation state, so it leaves nothing behind in the run.
    """

    model: Model
    """The agent's model."""
    config: Any
    """The model's settings, copied when the request was built."""
    system_prompt: Any
    """The system prompt (content blocks when set)."""
    tool_specs: list[Any]
    """The tool specs the agent offers."""
    model_state: dict[str, Any]
    """The agent's model state (each probe gets a copy)."""
    agent_metadata: Any = None
    """The agent's metadata, passed on as the loop passes it."""
    invocation_state: dict[str, Any] | None = None
    """The invocation's state (each probe gets a copy)."""
    tool_choice: Any = None
    """The tool choice of the request."""
    structured_output_model: Any = None
    """The structured output model of the request."""
    dynamic_trailing_blocks: int = 0
    """Trailing content blocks the loop adds per request."""
    calls: int = field(default=0, compare=False)
    """Probes sent so far."""

    @classmethod
    def of(cls, agent: Agent, invocation_state: dict[str, Any] | None = None) -> AgentRequest:
        """The agent's next request: its model, system prompt (content blocks when set), tools, model state.

        Args:
            agent: The Strands agent.
            invocation_state: The invocation's state, when a hook event carries it.

        Returns:
            The request, with copies of everything a probe could change.
        """
        content = agent.system_prompt_content
        return cls(
            model=agent.model,
            config=_config(agent.model),
            system_prompt=copy.deepcopy(content if content is not None else agent.system_prompt),
            tool_specs=copy.deepcopy(agent.tool_registry.get_all_tool_specs()),
            model_state=copy.deepcopy(getattr(agent, "_model_state", {})),
            agent_metadata=getattr(agent, "_metadata", None),
            invocation_state=dict(invocation_state) if invocation_state is not None else None,
        )

    @property
    def system_prompt_text(self) -> str | None:
        """The system prompt as text (what MemRM sees as the system turn)."""
        text, _ = split_system_prompt(self.system_prompt)
        return text

    def key(self, messages: Sequence[Any]) -> tuple[Any, ...]:
        """What identifies this request with `messages`, as the agent loop would send it.

        Args:
            messages: The messages to send (only their role and content count: the loop strips the rest).

        Returns:
            The model, its settings, the messages, system prompt, tool specs, tool choice,
            trailing blocks and output model.
        """
        return (self.model, self.config, _messages_key(messages), self.system_prompt, self.tool_specs,
                self.tool_choice, self.dynamic_trailing_blocks, self.structured_output_model)

    async def stream(self, messages: Sequence[Any]) -> ProbeRecord:
        """Send the request with `messages` through the agent loop's own streaming call.

        Args:
            messages: The context to probe, as Strands messages.

        Returns:
            The probe's record: its key, events and final message.

        Raises:
            RuntimeError: The model stream ended without a final message.
        """
        self.calls += 1
        text, content = split_system_prompt(self.system_prompt)
        model_state = copy.deepcopy(self.model_state)
        options: dict[str, Any] = {}
        if self.agent_metadata is not None:
            options["agent_metadata"] = self.agent_metadata
        events: list[Any] = []
        async for event in stream_messages(
            self.model,
            text,
            list(messages),
            self.tool_specs,
            tool_choice=self.tool_choice,
            system_prompt_content=content,
            invocation_state=dict(self.invocation_state) if self.invocation_state is not None else None,
            model_state=model_state,
            **options,
        ):
            events.append(event)
        if not events or "stop" not in events[-1]:
            raise RuntimeError("the model stream ended without a final message")
        message = events[-1]["stop"][1]
        return ProbeRecord(self.key(messages), events, message, model_state != self.model_state)


def request_key(context: Any) -> tuple[Any, ...]:
    """The key of the request an ``InvokeModelStage`` context is about to send."""
    return (context.model, _config(context.model), _messages_key(context.messages), context.system_prompt,
            context.tool_specs, context.tool_choice, getattr(context, "dynamic_trailing_blocks", 0),
            getattr(context, "structured_output_model", None))


class ProbeReplay:
    """Serves a probe as the agent's next model call when that call is the probed request.

    One per guarded manager; `wire` registers it on an agent once (``Agent.add_middleware`` from
    Strands 1.62, the agent's private middleware registry before), at the agent's first model
    call: middleware added before then wraps it, and sees a served probe as the model call. A
    probe offered for an agent is used at most once: the next model call takes it, identical or not.
    """

    def __init__(self) -> None:
        self._offers: weakref.WeakKeyDictionary[Any, ProbeRecord] = weakref.WeakKeyDictionary()
        self._wired: weakref.WeakSet[Any] = weakref.WeakSet()
        self.served = 0
        """Model calls answered by a probe so far."""

    def wire(self, agent: Agent) -> bool:
        """Register the replay middleware on `agent`, once.

        Args:
            agent: The Strands agent.

        Returns:
            True once it is registered (now or before); False when this Strands version has no
            model middleware (probes are then not reused, and a warning is logged).
        """
        if agent in self._wired:
            return True
        stage = invoke_model_stage()
        add: Callable[..., Any] | None = getattr(agent, "add_middleware", None)
        if add is None:
            registry = getattr(agent, "_middleware_registry", None)
            add = getattr(registry, "add_middleware", None)
        if stage is None or add is None:
            logger.warning("memguard: this Strands version has no model middleware: probes are not reused")
            return False
        add(stage, self._serve)
        self._wired.add(agent)
        return True

    def offer(self, agent: Agent, record: ProbeRecord | None) -> None:
        """Make `record` the answer to the agent's next model call, if that call is its request.

        Args:
            agent: The Strands agent.
            record: The winning probe; None, a probe that changed the model state, or an agent not
                wired drops any offer instead.
        """
        if record is None or record.model_state_changed or agent not in self._wired:
            self._offers.pop(agent, None)
            return
        self._offers[agent] = record

    def clear(self, agent: Agent) -> None:
        """Forget any offer for `agent` (a new invocation starts).

        Args:
            agent: The Strands agent.
        """
        self._offers.pop(agent, None)

    async def _serve(self, context: Any, next_fn: Callable[[Any], AsyncGenerator[Any, None]]) -> AsyncGenerator[Any]:
        record = self._offers.pop(context.agent, None)
        if record is not None and _same_request(record.request, request_key(context)):
            self.served += 1
            for event in record.replay():
                yield event
            return
        async for event in next_fn(context):
            yield event


def _same_request(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and a[0] is b[0] and all(x == y for x, y in zip(a[1:], b[1:], strict=True))
