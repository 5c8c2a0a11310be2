"""Compaction capabilities of the `compact_history` kind (pydantic-ai-slim 2.78+), for the tests.

`SummarizeHistory` asks for compaction once the history holds more than `max_messages` messages
and then replaces everything before the latest tool exchange with a summary of its own (a
`CompactionPart` in a request) that keeps the task but not FACT, so the scripted agent forgets.
`Overflowing` is the scripted model with a small context window: it refuses a history longer than
`window` messages with `ModelContextWindowExceededError`, so core compacts to retry (reason
`context_overflow`). `EncryptedCompaction` answers like a provider's native compaction whose
summary only the provider can read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.capabilities.compaction import CompactionRequest, CompactionResult
from pydantic_ai.exceptions import ModelContextWindowExceededError
from pydantic_ai.messages import CompactionPart, ModelMessage, ModelRequest, ModelResponse
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.tools import RunContext

from pai_doubles import TASK, ScriptedModel

__all__ = ["EncryptedCompaction", "Overflowing", "SummarizeHistory"]


@dataclass
class SummarizeHistory(AbstractCapability[None]):
    """Summarizes all but the latest tool exchange when the history grows past `max_messages`."""

    max_messages: int | None = 6
    keep: int = 2
    requests: list[CompactionRequest] = field(default_factory=list)
    results: list[CompactionResult] = field(default_factory=list)

    async def before_model_request(
        self, ctx: RunContext[None], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        if self.max_messages is not None and len(ctx.messages) > self.max_messages:
            ctx.request_compaction(reason="threshold")
        return request_context

    async def compact_history(self, ctx: RunContext[None], request: CompactionRequest) -> CompactionResult | None:
        self.requests.append(request)
        summary = CompactionPart(content=f"Task: {TASK} Steps done so far: {len(request.messages) // 2}.")
        result = CompactionResult(
            messages=[ModelRequest(parts=[summary]), *request.messages[-self.keep :]],
            part=summary,
            handler="test-summary",
        )
        self.results.append(result)
        return result

    @property
    def calls(self) -> int:
        return len(self.requests)


@dataclass
class EncryptedCompaction(SummarizeHistory):
    """Like a provider's native compaction: the summary is encrypted in a response (content None)."""

    async def compact_history(self, ctx: RunContext[None], request: CompactionRequest) -> CompactionResult | None:
        self.requests.append(request)
        part = CompactionPart(content=None, provider_name="function", id="cmp_1",
                              provider_details={"encrypted_content": "gAAAA-opaque"})
        result = CompactionResult(
            messages=[ModelResponse(parts=[part], provider_name="function"), *request.messages[-self.keep :]],
            part=part,
            handler="native-test",
        )
        self.results.append(result)
        return result


class Overflowing(ScriptedModel):
    """The scripted agent with a context window of `window` messages."""

    def __init__(self, window: int = 6, n_steps: int | None = None) -> None:
        super().__init__() if n_steps is None else super().__init__(n_steps)
        self.window = window
        self.refused = 0

    def _note(self, messages: list[ModelMessage], info: Any) -> ModelResponse:
        if len(messages) > self.window:
            with self._lock:
                self.refused += 1
                self.inputs.append(list(messages))
                self.infos.append(info)
            raise ModelContextWindowExceededError("scripted-agent", "the input exceeds the context window")
        return super()._note(messages, info)


def parts_of(messages: Sequence[ModelMessage]) -> list[Any]:
    return [part for message in messages for part in message.parts]
