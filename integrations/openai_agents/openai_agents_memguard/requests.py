"""One model request, exactly as the Runner sends it, and the key that recognises it again.

A probe must be the request the run would send (the same model, instructions, settings, tools,
handoffs, output schema and prompt; only the input differs between the full and the compacted
context), or MemRM judges an action the agent would not take. A probe's answer may stand in for
the run's own call only when that call is the very same request: `ModelRequest.key` holds all of
it, the input included, so a call sent with other settings (a per-turn `tool_choice`, another
temperature) never receives an answer made for another request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from agents import Model, ModelResponse, ModelSettings, ModelTracing

from openai_agents_memguard.items import input_digest

__all__ = ["ModelRequest", "request_signature"]

PROMPT_CACHE_KEY = "prompt_cache_key"
"""`extra_args` field the Runner adds per conversation for OpenAI models; it does not change the answer."""


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)


def _settings(settings: ModelSettings | None) -> Any:
    """The settings as plain data, without the Runner's prompt-cache key (a routing hint, not the request)."""
    if settings is None:
        return None
    try:
        plain = settings.to_json_dict()
    except Exception:  # noqa: BLE001 - an unserialisable extra: its repr still tells requests apart
        return repr(settings)
    extra = plain.get("extra_args")
    if isinstance(extra, dict) and PROMPT_CACHE_KEY in extra:
        plain["extra_args"] = {k: v for k, v in extra.items() if k != PROMPT_CACHE_KEY} or None
    return plain


def _tool(tool: Any) -> Any:
    schema = getattr(tool, "params_json_schema", None)
    if schema is None and dataclasses.is_dataclass(tool) and not isinstance(tool, type):
        schema = {f.name: repr(getattr(tool, f.name, None)) for f in dataclasses.fields(tool)
                  if not f.name.startswith("_") and not callable(getattr(tool, f.name, None))}
    return [type(tool).__name__, getattr(tool, "name", None), schema, getattr(tool, "strict_json_schema", None)]


def _handoff(handoff: Any) -> Any:
    return [getattr(handoff, "tool_name", None), getattr(handoff, "input_json_schema", None)]


def _output_schema(schema: Any) -> Any:
    if schema is None:
        return None
    try:
        plain = schema.is_plain_text()
        return [type(schema).__name__, schema.name(), None if plain else schema.json_schema(),
                schema.is_strict_json_schema()]
    except Exception:  # noqa: BLE001 - a custom schema object: its repr
        return repr(schema)


def request_signature(model: Any, settings: ModelSettings | None, tools: Sequence[Any], output_schema: Any,
                      handoffs: Sequence[Any], prompt: Any) -> str:
    """A digest of everything in a request but its input.

    Args:
        model: The model instance called (its class and identity: another instance is another request).
        settings: The model settings (tool_choice included), without the Runner's per-conversation
            prompt-cache key, which does not change the answer.
        tools: The tools sent.
        output_schema: The output schema, if any.
        handoffs: The handoffs offered.
        prompt: The prompt reference, if any.

    Returns:
        A SHA-256 hex digest.
    """
    payload = _json([
        f"{type(model).__module__}.{type(model).__qualname__}@{id(model):x}",
        _settings(settings), [_tool(t) for t in tools], _output_schema(output_schema),
        [_handoff(h) for h in handoffs], prompt,
    ])
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class ModelRequest:
    """The arguments of one `Model.get_response` / `stream_response` call, exactly as the Runner sends them.

    A probe is this request with another input (`with_input`); its answer may stand in for the
    run's own call only when their `key`s are equal.
    """

    instructions: str | None
    """The system instructions."""
    input: list[Any]
    """The input items (the context)."""
    settings: ModelSettings
    """The model settings, resolved for this call."""
    tools: list[Any]
    """The tools sent."""
    output_schema: Any
    """The output schema, if any."""
    handoffs: list[Any]
    """The handoffs offered."""
    tracing: ModelTracing
    """How the call is traced."""
    prompt: Any = None
    """The prompt reference, if any."""
    previous_response_id: str | None = None
    """Set when the API holds the conversation (see `server_managed`)."""
    conversation_id: str | None = None
    """Set when the API holds the conversation (see `server_managed`)."""

    def with_input(self, instructions: str | None, items: Sequence[Any]) -> ModelRequest:
        """The same request on another context: what a probe sends.

        Args:
            instructions: The instructions to send.
            items: The input items to send.

        Returns:
            A copy of this request with that input.
        """
        return dataclasses.replace(self, instructions=instructions, input=list(items))

    def signature(self, model: Any) -> str:
        """Everything of this request to `model` but its input (see `request_signature`).

        Args:
            model: The model instance called.

        Returns:
            A SHA-256 hex digest.
        """
        return request_signature(model, self.settings, self.tools, self.output_schema, self.handoffs, self.prompt)

    def key(self, model: Any) -> str:
        """The whole request to `model`: its input and everything else.

        Args:
            model: The model instance called.

        Returns:
            The input's `input_digest` and the `signature`, joined by a colon.
        """
        return input_digest(self.instructions, self.input) + ":" + self.signature(model)

    @property
    def server_managed(self) -> bool:
        """The API holds the conversation: the input is only the new items, and no probe can see the rest."""
        return self.previous_response_id is not None or self.conversation_id is not None

    async def get_response(self, model: Model) -> ModelResponse:
        """Send this request to `model`.

        Args:
            model: The model to call.

        Returns:
            The model's response.
        """
        return await model.get_response(
            self.instructions, self.input, self.settings, self.tools, self.output_schema, self.handoffs,
            self.tracing, previous_response_id=self.previous_response_id, conversation_id=self.conversation_id,
            prompt=self.prompt,
        )

    def stream_response(self, model: Model) -> AsyncIterator[Any]:
        """Send this request to `model`, streamed.

        Args:
            model: The model to call.

        Returns:
            The model's stream events.
        """
        return model.stream_response(
            self.instructions, self.input, self.settings, self.tools, self.output_schema, self.handoffs,
            self.tracing, previous_response_id=self.previous_response_id, conversation_id=self.conversation_id,
            prompt=self.prompt,
        )
