"""The model request a probe sends, and what makes two requests the same one.

A probe must be the request the agent loop would send on a context: the loop hands the model its
messages cleaned (consecutive requests merged, a dangling tool call repaired) and adapted by the
model's own `prepare_messages`, with the request's settings and parameters. `outgoing` prepares
a probe that way. `request_key` names a request by everything the model is sent (its messages,
settings, tools, output schema, instructions): a probe's answer may stand in for the loop's own
call only when the two keys are equal (memguard's core API, §4).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pydantic import TypeAdapter
from pydantic_ai import messages as _messages
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.settings import ModelSettings
from pydantic_core import to_json

__all__ = ["outgoing", "request_key"]

_PARAMETERS: TypeAdapter[ModelRequestParameters] = TypeAdapter(ModelRequestParameters)


def _clean(messages: list[ModelMessage]) -> list[ModelMessage]:
    """The loop's normalisation of a history before it is sent (private in Pydantic AI, stable 2.62-2.78)."""
    clean = getattr(_messages, "_clean_message_history", None)
    return list(messages) if clean is None else list(clean(list(messages), repair_last_response=True))


def _with_framing(parameters: ModelRequestParameters, settings: ModelSettings | None) -> ModelRequestParameters:
    """The request's `framing_announcement` setting carried on its parameters, as the loop does (2.78+)."""
    if not hasattr(parameters, "_framing_announcement"):
        return parameters
    framing = (settings or {}).get("framing_announcement")
    if framing == parameters._framing_announcement:
        return parameters
    return replace(parameters, _framing_announcement=framing)  # type: ignore[call-arg, unused-ignore]


def outgoing(
    model: Model,
    messages: Sequence[ModelMessage],
    settings: ModelSettings | None,
    parameters: ModelRequestParameters,
) -> tuple[list[ModelMessage], ModelRequestParameters]:
    """The messages and parameters the agent loop hands `model` for a request on `messages`.

    The loop cleans a history before it is sent (consecutive requests merged, a dangling tool
    call repaired) and lets the model adapt it (`prepare_messages`); a probe must be prepared the
    same way to be the same request.

    Args:
        model: The model the request is for.
        messages: The history.
        settings: The request's model settings.
        parameters: The request's parameters.

    Returns:
        The messages as sent, and the parameters as sent.
    """
    parameters = _with_framing(parameters, settings)
    cleaned = _clean(list(messages))
    adapted = model.prepare_messages(cleaned, parameters)
    return (_clean(adapted) if adapted is not cleaned else adapted), parameters


def request_key(
    model: Model,
    messages: Sequence[ModelMessage],
    settings: ModelSettings | None,
    parameters: ModelRequestParameters,
) -> str:
    """A digest of everything `model` is sent: the probe-reuse match key.

    A probe's answer may stand in for the loop's own call only when their keys are equal.

    Args:
        model: The model the request is for (its system and name are part of the key).
        messages: The messages as sent (see `outgoing`), with their ids, timestamps and metadata.
        settings: The model settings (temperature, max tokens, tool choice, ...).
        parameters: The request parameters (tools, output schema and mode, instructions), without
            their private telemetry fields.

    Returns:
        A SHA-256 hex digest.
    """
    digest = hashlib.sha256()
    digest.update(f"{model.system}\x00{model.model_name}\x00".encode())
    digest.update(ModelMessagesTypeAdapter.dump_json(list(messages)))
    digest.update(b"\x00")
    digest.update(to_json(dict(settings or {}), fallback=repr))
    digest.update(b"\x00")
    digest.update(_PARAMETERS.dump_json(parameters, fallback=_any_repr))
    return digest.hexdigest()


def _any_repr(value: Any) -> str:
    return repr(value)
