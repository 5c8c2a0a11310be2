"""`MemGuardInputFilter`: guard a per-call input filter (`ToolOutputTrimmer`, yours) with MemRM.

`RunConfig(call_model_input_filter=f)` runs `f` right before every model call and changes only
that call's input, never the session. The guard wraps `f`: when `f` changes the input, the
guard probes the agent's model on the unfiltered and on the filtered input, scores the pair with
MemRM and passes on

- commit: the filtered input;
- fallback: a safer filter's input (`fallbacks`: other input filters or memguard strategies);
- veto: the input unchanged (the inner filter's edit is dropped for this call).

Cost in model calls: a review probes the model twice (full and filtered input). With the run's
model wrapped by `wrap_model` (`MemGuardModel`), the winning probe answers the run's own call,
so a review costs one extra model call; without it, two. A sequential fallback adds one probe
each. Because the filter proposes again at every call, the guard's cooldown keeps a vetoed
conversation from being reviewed again for `Guard(cooldown=...)` steps (model calls): pass a
stable `conversation_id` (the session or thread id) so the cooldown finds the conversation.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from agents import Model
from agents.run import CallModelData, ModelInputData
from memguard import CompactionEvent, Decision, Guard, Verdict
from memguard.strategies import as_strategy

from openai_agents_memguard.hooks import notify
from openai_agents_memguard.items import from_view, to_view
from openai_agents_memguard.probing import AgentProbe, probe_model
from openai_agents_memguard.reuse import MemGuardModel, ProbeStore

__all__ = ["AsyncFilterStrategy", "ConversationId", "FilterStrategy", "MemGuardInputFilter", "filter_name"]

logger = logging.getLogger("memguard.openai_agents")

InputFilter = Callable[[CallModelData[Any]], Any]
ConversationId = str | Callable[[CallModelData[Any]], "str | None"] | None


def filter_name(input_filter: Any) -> str:
    """A readable strategy name for an input filter (audit records, the RM's perturbation tag)."""
    name = getattr(input_filter, "name", None)
    if isinstance(name, str) and name:
        return name
    cls = type(input_filter).__name__ if not inspect.isfunction(input_filter) else input_filter.__name__
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", cls).lower()
    if cls == "ToolOutputTrimmer":
        return f"{snake}_recent_{input_filter.recent_turns}_max_{input_filter.max_output_chars}"
    return snake


def _checked(input_filter: InputFilter, result: Any) -> ModelInputData:
    if not isinstance(result, ModelInputData):
        raise TypeError(f"{filter_name(input_filter)} returned {type(result).__name__}, not a ModelInputData")
    return result


async def _run_filter(input_filter: InputFilter, data: CallModelData[Any]) -> ModelInputData:
    result = input_filter(data)
    if inspect.isawaitable(result):
        result = await result
    return _checked(input_filter, result)


def _fresh(data: CallModelData[Any], items: list[Any], instructions: str | None) -> CallModelData[Any]:
    """The call's data with its own copy of the input list (filters may edit the list in place)."""
    return CallModelData(model_data=ModelInputData(input=list(items), instructions=instructions),
                         agent=data.agent, context=data.context)


class FilterStrategy:
    """An input filter used as a memguard fallback strategy, bound to one model call.

    Messages in (the guard's view of the call's input), messages out; `bind` picks the async
    variant for a coroutine filter (the guard awaits async strategies).
    """

    def __init__(self, input_filter: InputFilter, data: CallModelData[Any]) -> None:
        self.input_filter = input_filter
        self.data = data
        self.name = filter_name(input_filter)

    @staticmethod
    def bind(input_filter: InputFilter, data: CallModelData[Any]) -> FilterStrategy:
        # A coroutine function, or a filter object whose (possibly inherited) __call__ is one.
        methods = [vars(klass)["__call__"] for klass in type(input_filter).__mro__ if "__call__" in vars(klass)]
        is_async = inspect.iscoroutinefunction(input_filter) or (
            bool(methods) and inspect.iscoroutinefunction(methods[0]))
        return (AsyncFilterStrategy if is_async else FilterStrategy)(input_filter, data)

    def _data(self, messages: Sequence[Any]) -> CallModelData[Any]:
        instructions, items = from_view(list(messages))
        return _fresh(self.data, items, instructions)

    def __call__(self, messages: Sequence[Any]) -> list[Any]:
        result = self.input_filter(self._data(messages))
        return to_view(_checked(self.input_filter, result).input, result.instructions)


class AsyncFilterStrategy(FilterStrategy):
    """`FilterStrategy` for a coroutine input filter."""

    async def __call__(self, messages: Sequence[Any]) -> list[Any]:  # type: ignore[override]
        result = await _run_filter(self.input_filter, self._data(messages))
        return to_view(result.input, result.instructions)


def _unchanged(before: ModelInputData, after: ModelInputData) -> bool:
    if after is before:
        return True
    if before.instructions != after.instructions or len(before.input) != len(after.input):
        return False
    return all(a is b or a == b for a, b in zip(before.input, after.input, strict=True))


class MemGuardInputFilter:
    """A `call_model_input_filter` that lets MemRM decide whether `inner`'s edit is safe.

    ::

        guarded = MemGuardInputFilter(ToolOutputTrimmer(recent_turns=2), guard)
        agent = Agent(name="coder", model=guarded.wrap_model(model), tools=[...])
        Runner.run_sync(agent, task, run_config=RunConfig(call_model_input_filter=guarded))

    `model` is the model to probe when the agent names its model by string (the probe must call
    what the run calls); `fallbacks` are tried in order before the guard's own chain. Use
    `wrap_model` on the run's model so the winning probe answers the run's call.
    `conversation_id` (a string or a function of the call's `CallModelData`) keys the guard's
    cooldown; without it the guard derives an id from the conversation's opening.
    """

    def __init__(
        self,
        inner: InputFilter,
        guard: Guard,
        *,
        fallbacks: Sequence[Any] = (),
        model: Model | None = None,
        strategy: str | None = None,
        on_decision: Callable[[Decision], Any] | None = None,
        conversation_id: ConversationId = None,
    ) -> None:
        if not callable(inner):
            raise TypeError(f"inner must be a call_model_input_filter (a callable), got {type(inner).__name__}")
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a memguard.Guard, got {type(guard).__name__}")
        if model is not None and not isinstance(model, Model):
            raise TypeError(f"model must be an agents.Model instance, got {type(model).__name__}")
        self.inner = inner
        self.guard = guard
        self.model = model
        self.strategy = strategy or filter_name(inner)
        self.fallbacks = tuple(fallbacks)
        for fallback in self.fallbacks:
            if not callable(fallback):
                raise TypeError(f"fallback {fallback!r} is neither an input filter nor a memguard strategy")
        self.on_decision = on_decision
        self.conversation_id = conversation_id
        self.store = ProbeStore()
        self.last_decision: Decision | None = None

    def wrap_model(self, model: Model) -> MemGuardModel:
        """`model`, answering the run's call with the winning probe when there is one (see `reuse`)."""
        if isinstance(model, MemGuardModel) and model.store is self.store:
            return model
        return MemGuardModel(model, self.store)

    async def __call__(self, data: CallModelData[Any]) -> ModelInputData:
        before = data.model_data
        proposed = await _run_filter(self.inner, _fresh(data, before.input, before.instructions))
        if _unchanged(before, proposed):
            return proposed
        probe = AgentProbe(data.agent, data.context, probe_model(data.agent, self.model))
        event = CompactionEvent(
            before=to_view(before.input, before.instructions),
            candidate=to_view(proposed.input, proposed.instructions),
            strategy=self.strategy,
            metadata={"framework": "openai-agents", "filter": self.strategy, "agent": data.agent.name},
            **self._conversation(data),
        )
        decision = await self.guard.areview(event, probe, fallbacks=self._fallbacks_for(data))
        self._record(decision)
        if decision.verdict is Verdict.AUDIT:
            return proposed
        chosen = before if decision.verdict is Verdict.VETO else self._chosen(decision, proposed)
        won = probe.probe_for(decision.response)
        if won is not None:
            self.store.put(won.instructions, won.items, won.response)
            if (won.instructions, won.items) != (chosen.instructions, list(chosen.input)):
                logger.debug("memguard: the winning probe saw another input than the one passed on")
        return chosen

    def _conversation(self, data: CallModelData[Any]) -> dict[str, Any]:
        cid = self.conversation_id(data) if callable(self.conversation_id) else self.conversation_id
        return {} if cid is None else {"conversation_id": str(cid)}

    def _fallbacks_for(self, data: CallModelData[Any]) -> tuple[Any, ...] | None:
        if not self.fallbacks:
            return None
        bound = [f if _is_strategy(f) else FilterStrategy.bind(f, data) for f in self.fallbacks]
        return (*(as_strategy(b) for b in bound), *self.guard.fallbacks)

    @staticmethod
    def _chosen(decision: Decision, proposed: ModelInputData) -> ModelInputData:
        instructions, items = from_view(decision.messages)
        if (
            instructions == proposed.instructions
            and len(items) == len(proposed.input)
            and all(a is b for a, b in zip(items, proposed.input, strict=True))
        ):
            return proposed  # the inner filter's own object, untouched
        return ModelInputData(input=items, instructions=instructions)

    def _record(self, decision: Decision) -> None:
        self.last_decision = decision
        notify(self.on_decision, decision)


def _is_strategy(fallback: Any) -> bool:
    """memguard strategies (a `name` and messages in, messages out) versus input filters (CallModelData in)."""
    return isinstance(getattr(fallback, "name", None), str) and not isinstance(fallback, FilterStrategy)
