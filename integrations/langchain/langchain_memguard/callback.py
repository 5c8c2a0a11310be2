"""`MemGuardCallbackHandler`: audit any LangChain/LangGraph agent's compactions from its callbacks.

Whatever compacts the agent's memory (`SummarizationMiddleware`, a pre-model hook, langmem,
hand-written code), the chat model's successive inputs show it: within one conversation each
input normally extends the previous one plus the model's own output and new tool/user turns.
When an input instead drops messages, brings a new summary, or rewrites a known message, the
history was compacted. The pre-compaction context is rebuilt as previous input + previous output
+ the new tail; the agent's actual next output (``on_llm_end``) is the proposed action; the
recorded action is probed with `probe_model` on the rebuilt context, in the background, on the
guard's audit worker. Callback methods catch everything and do no model work: the agent is never
delayed and never sees an exception from here.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from memguard import CompactionEvent, Guard

from langchain_memguard.replay import SameRequest, adopted_kwargs, model_params
from langchain_memguard.views import GuardView, summary_text

__all__ = ["PROBE_TAG", "MemGuardCallbackHandler"]

logger = logging.getLogger("memguard.langchain")

_UNKNOWN = object()

PROBE_TAG = "memguard:probe"
"""Tag on the background probe's model run (such runs are never taken for agent steps)."""


def _message_key(message: BaseMessage) -> tuple[Any, ...]:
    """Identity of a message for comparing inputs: type, content and tool calls (not ids, not names).

    Fields are read by type (a missing attribute costs pydantic an exception per message).
    """
    calls = tuple(
        (call.get("name"), repr(call.get("args")), call.get("id"))
        for call in (message.tool_calls if isinstance(message, AIMessage) else ())
    )
    content = message.content if isinstance(message.content, str) else repr(message.content)
    return (message.type, content, calls, message.tool_call_id if isinstance(message, ToolMessage) else None)


def _grew(previous: Sequence[BaseMessage], current: Sequence[BaseMessage]) -> bool:
    """Whether `current` starts with `previous`: the same objects (the usual case in a graph, checked
    first, no conversion), else messages equal by `_message_key` (a middleware's copies)."""
    if len(current) < len(previous):
        return False
    return all(p is c or _message_key(p) == _message_key(c) for p, c in zip(previous, current, strict=False))


@dataclass
class _Track:
    """The last model input and output seen in one conversation."""

    inputs: list[BaseMessage]
    output: BaseMessage | None = None


@dataclass
class _Pending:
    key: str
    before: list[BaseMessage]
    candidate: list[BaseMessage]
    strategy: str
    params: dict[str, Any] | None = None  # the agent's request at this step, messages aside
    extra: dict[str, Any] = field(default_factory=dict)


def _namespace_parent(metadata: dict[str, Any]) -> str:
    """The graph namespace of the calling node (sub-agents get their own conversation)."""
    namespace = str(metadata.get("checkpoint_ns") or "")
    return "|".join(namespace.split("|")[:-1])


def rebuild_before(previous: Sequence[BaseMessage], output: BaseMessage | None,
                   current: Sequence[BaseMessage]) -> tuple[list[BaseMessage], str] | None:
    """The context the agent would have had without compaction, and what kind of compaction it was.

    None when `current` is the ordinary continuation of `previous` (+ `output`).
    """
    if _grew(previous, current):
        return None  # previous input is a prefix: the history only grew
    known = [*previous, *([output] if output is not None else [])]
    known_keys = [_message_key(m) for m in known]
    current_keys = [_message_key(m) for m in current]
    known_set = set(known_keys)
    tail: list[BaseMessage] = []
    for message, key in zip(reversed(current), reversed(current_keys), strict=True):
        if key in known_set or summary_text(message) is not None:
            break
        tail.append(message)
    tail.reverse()
    before = [*known, *tail]
    known_ids = {m.id: k for m, k in zip(known, known_keys, strict=True) if m.id}
    new_summary = any(
        summary_text(m) is not None and k not in known_set for m, k in zip(current, current_keys, strict=True)
    )
    edited = any(m.id in known_ids and known_ids[m.id] != k for m, k in zip(current, current_keys, strict=True))
    if new_summary:
        return before, "summarization"
    if edited:
        return before, "context_editing"
    if len(current) < len(before):
        return before, "compaction"
    return None


class MemGuardCallbackHandler(BaseCallbackHandler):
    """Audit-only memguard for any LangChain or LangGraph agent: ``config={"callbacks": [handler]}``.

    Whatever compacts the agent's memory, the chat model's successive inputs show it: an input
    that drops messages, brings a new summary or rewrites a known message follows a compaction.
    The context before it is rebuilt (previous input, previous output, the new tail), the agent's
    actual next output is the proposed action, and `probe_model` answers on the rebuilt context,
    in the background on the guard's audit worker. The callbacks do no model work and never raise
    into the agent.

    Args:
        guard: The guard, in audit mode (its sinks receive the decisions).
        probe_model: A chat model that answers like the agent's own: the agent's own chat model,
            configured alike (the tools and settings of the agent's call are bound to it). Called
            once per detected compaction, in the background.
        strategy: The name recorded for every compaction (default: the kind detected:
            ``summarization``, ``context_editing`` or ``compaction``).
        max_conversations: How many conversations to track at once; the least recently seen is
            forgotten first.

    Raises:
        TypeError: `guard` is not a `Guard`, or `probe_model` has no ``invoke``.
        ValueError: `guard` is not in audit mode, or `max_conversations` is below 1.
    """

    raise_error = False
    run_inline = True  # cheap bookkeeping in callback order; the real work is on the audit worker

    def __init__(
        self, guard: Guard, probe_model: Any, *, strategy: str | None = None, max_conversations: int = 1024
    ) -> None:
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a memguard.Guard, got {type(guard).__name__}")
        if guard.mode != "audit":
            raise ValueError(
                "MemGuardCallbackHandler only records: use Guard(mode='audit'); "
                "to enforce, wrap the compaction middleware in MemGuardMiddleware"
            )
        if not callable(getattr(probe_model, "invoke", None)):
            raise TypeError("probe_model must be a chat model (something with .invoke(messages))")
        if max_conversations < 1:
            raise ValueError(f"max_conversations must be >= 1, got {max_conversations!r}")
        self.guard = guard
        self.probe_model = probe_model
        self.strategy = strategy
        self.max_conversations = max_conversations
        self.detected = 0
        """Compactions detected so far (each one queued for review)."""
        self.failures = 0
        """Callbacks that failed and were skipped (logged by exception type only)."""
        self._lock = threading.Lock()
        self._roots: dict[UUID, UUID] = {}
        self._tracks: OrderedDict[str, _Track] = OrderedDict()
        self._active: dict[UUID, str] = {}
        self._pending: dict[UUID, _Pending] = {}
        self._probe_params: Any = _UNKNOWN

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait for the background audits to be written (the guard's audit worker).

        Args:
            timeout: Seconds to wait at most; None waits until the queue is drained.

        Returns:
            True when every queued audit was written in time (see `memguard.Guard.flush`).
        """
        return self.guard.flush(timeout)

    # ------------------------------------------------------------------ run tree

    def on_chain_start(
        self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        """Track the run tree, so that a model call finds its top-level run.

        The top-level run names the conversation when the run has no ``thread_id``.

        See `langchain_core.callbacks.BaseCallbackHandler.on_chain_start`.
        """
        try:
            with self._lock:
                self._roots[run_id] = (self._root_of(parent_run_id) if parent_run_id else None) or run_id
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget a finished top-level run that had no thread id, and its conversations.

        See `langchain_core.callbacks.BaseCallbackHandler.on_chain_end`.
        """
        self._end_chain(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget a failed top-level run that had no thread id, as `on_chain_end` does.

        See `langchain_core.callbacks.BaseCallbackHandler.on_chain_error`.
        """
        self._end_chain(run_id)

    def _end_chain(self, run_id: UUID) -> None:
        try:
            with self._lock:
                root = self._roots.pop(run_id, None)
                if root == run_id:  # a finished top-level run without a thread: forget it
                    for key in [k for k in self._tracks if k.startswith(f"run:{run_id}")]:
                        del self._tracks[key]
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    def _root_of(self, run_id: UUID | None) -> UUID | None:
        return self._roots.get(run_id, run_id) if run_id is not None else None

    # ------------------------------------------------------------------ model calls

    def on_chat_model_start(
        self,
        serialized: Any,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Compare the model's input with the conversation's previous one to detect a compaction.

        A compaction found here waits for this call's output (`on_llm_end`). Summariser calls,
        memguard's own probes (tagged `PROBE_TAG`) and batches are not agent steps and are
        ignored. See `langchain_core.callbacks.BaseCallbackHandler.on_chat_model_start`.
        """
        try:
            metadata = metadata or {}
            if PROBE_TAG in (tags or []) or metadata.get("lc_source") == "summarization" or len(messages) != 1:
                return  # a summariser's or our own call, or a batch: not an agent step
            current = list(messages[0])
            key = self._conversation_key(run_id, parent_run_id, metadata)
            with self._lock:
                previous = self._tracks.get(key)
                self._tracks[key] = _Track(inputs=current)
                self._tracks.move_to_end(key)
                while len(self._tracks) > self.max_conversations:
                    self._tracks.popitem(last=False)
                self._active[run_id] = key
            if previous is None:
                return
            found = rebuild_before(previous.inputs, previous.output, current)
            if found is None:
                return
            before, kind = found
            params = kwargs.get("invocation_params")
            with self._lock:
                self._pending[run_id] = _Pending(
                    key, before, current, self.strategy or kind, dict(params) if isinstance(params, dict) else None
                )
                self.detected += 1
        except Exception as exc:  # noqa: BLE001 - never raise into the agent
            self._failed(exc)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Remember the step's output; after a compaction, queue its audit review.

        The output is the proposed action (the agent's answer on the compacted context).

        See `langchain_core.callbacks.BaseCallbackHandler.on_llm_end`.
        """
        try:
            with self._lock:
                key = self._active.pop(run_id, None)
                pending = self._pending.pop(run_id, None)
            if key is None:
                return
            message = _output_message(response)
            with self._lock:
                track = self._tracks.get(key)
                if track is not None:
                    track.output = message
            if pending is not None and message is not None:
                self._submit(pending, message)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Drop a failed step's pending review: there is no proposed action to judge.

        See `langchain_core.callbacks.BaseCallbackHandler.on_llm_error`.
        """
        with self._lock:
            self._active.pop(run_id, None)
            self._pending.pop(run_id, None)

    # ------------------------------------------------------------------ helpers

    def _conversation_key(self, run_id: UUID, parent_run_id: UUID | None, metadata: dict[str, Any]) -> str:
        namespace = _namespace_parent(metadata)
        thread = metadata.get("thread_id")
        if thread is not None:
            return f"thread:{thread}|{namespace}"
        with self._lock:
            root = self._root_of(parent_run_id) or run_id
        return f"run:{root}|{namespace}"

    def _submit(self, pending: _Pending, proposed: BaseMessage) -> None:
        view = GuardView()
        event = CompactionEvent(
            before=view.to_view(pending.before),
            candidate=view.to_view(pending.candidate),
            strategy=pending.strategy,
            conversation_id=pending.key,
            proposed_response=proposed,
            metadata={"framework": "langchain", "source": "callback"},
        )
        expected = pending.params

        def probe(messages: list[Any]) -> Any:
            # Runs on the guard's worker, in an empty context: only these callbacks see the probe.
            config: Any = {"tags": [PROBE_TAG], "callbacks": [SameRequest(expected)]}
            return self._probe_model_for(expected).invoke(view.from_view(messages), config=config)

        self.guard.review(event, probe)  # audit mode: queued on the guard's worker, returns at once

    def _probe_model_for(self, expected: dict[str, Any] | None) -> Any:
        """`probe_model` with the agent's call arguments at this step that it lacks (tools, settings)."""
        with self._lock:
            if self._probe_params is _UNKNOWN:
                self._probe_params = model_params(self.probe_model)  # once, on the worker
            params = self._probe_params
        adopted = adopted_kwargs(expected, params if isinstance(params, dict) else None)
        return self.probe_model.bind(**adopted) if adopted else self.probe_model

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        # Type only: a traceback's frames and messages may quote the conversation.
        logger.error("memguard: callback bookkeeping failed (%s); the agent is not affected", type(exc).__name__)


def _output_message(response: Any) -> BaseMessage | None:
    generations = getattr(response, "generations", None) or []
    if not generations or not generations[0]:
        return None
    return getattr(generations[0][0], "message", None)
