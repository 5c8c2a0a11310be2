"""The callback's probes, sent as the agent's own request at that step (messages aside).

LangChain reports every chat-model call to callbacks with its `invocation_params`: the model's
own parameters (its fields, ``_type``, ``stop``) merged with the call's keyword arguments, which
is where `bind_tools` (tools, tool_choice), model settings and structured output land. So the
agent's request at a step is known exactly, and a probe can be checked against it before it is
sent:

- `adopted_kwargs`: the call arguments the agent's request has and `probe_model` lacks (keys the
  probe model does not report at all: tools, tool_choice, settings a middleware bound); bound to
  the probe, they make ``probe_model=<the agent's chat model>`` send what the agent sent;
- `SameRequest`: a callback that stops the probe before it is sent unless its parameters equal
  the agent's, key by key (a different model, or a field configured otherwise: refused, never
  scored).
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage

__all__ = ["ProbeMismatchError", "SameRequest", "adopted_kwargs", "model_params"]


class ProbeMismatchError(ValueError):
    """`probe_model` would not send the request the agent sent (another model, or other settings).

    Raised before the probe is sent, so a request unlike the agent's is never scored: the audit
    record carries this error, which names the parameters that differ (never their values).
    """


class _Captured(BaseException):
    """Raised by `_Capture` to stop a call before it is sent.

    A `BaseException`, so LangChain's callback manager lets it through unlogged (it logs, then
    re-raises, an `Exception` from a ``raise_error`` handler); `model_params` catches it.
    """

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__("captured")
        self.params = params


class _Capture(BaseCallbackHandler):
    """Reads a model's invocation parameters and stops the call before anything is sent."""

    raise_error = True

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        raise _Captured(dict(kwargs.get("invocation_params") or {}))


def model_params(model: Any) -> dict[str, Any] | None:
    """The invocation parameters `model` reports for a call without arguments (no call is made).

    None when it reports none (not a chat model): nothing can then be adopted or checked.
    """
    try:
        model.invoke([HumanMessage("")], config={"callbacks": [_Capture()]})
    except _Captured as captured:
        return captured.params
    except Exception:  # noqa: BLE001 - a runnable that fails before any chat model starts: unknown
        return None
    return None


def adopted_kwargs(agent: dict[str, Any] | None, probe: dict[str, Any] | None) -> dict[str, Any]:
    """The agent's call arguments that the probe model does not report at all (to bind to it)."""
    if agent is None or probe is None:
        return {}
    return {k: v for k, v in agent.items() if k not in probe}


class SameRequest(BaseCallbackHandler):
    """Stops a probe, before it is sent, unless it is sent exactly like the agent's own call."""

    raise_error = True

    def __init__(self, expected: dict[str, Any] | None) -> None:
        self.expected = expected

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        if self.expected is None:
            return
        actual = kwargs.get("invocation_params") or {}
        differ = sorted(k for k in {*self.expected, *actual} if self.expected.get(k) != actual.get(k))
        if differ:
            # Names only: the values may hold tool schemas or prompts.
            raise ProbeMismatchError(
                "probe_model is not sent like the agent's model at this step (differs in: "
                f"{', '.join(differ)}): pass the agent's own chat model, configured alike"
            )
