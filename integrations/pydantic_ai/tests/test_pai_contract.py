"""memguard's integration contract on a compaction capability of the user's own (no harness needed).

It compacts in `before_model_request`, as pydantic-ai-harness's capabilities do, and runs at
both ends of the supported Pydantic AI range.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.tools import RunContext

from pai_contract import PydanticAIContract, StreamedContract


@dataclass
class KeepTaskAndLastStep(AbstractCapability[None]):
    """A hand-written compaction: the task and the latest tool call with its result."""

    async def before_model_request(
        self, ctx: RunContext[None], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        if len(ctx.messages) <= 6:
            return request_context
        ctx.messages[:] = [ctx.messages[0], *ctx.messages[-2:]]
        return replace(request_context, messages=list(ctx.messages))


class TestOwnCapabilityContract(PydanticAIContract):
    """`run_sync` and `run` with a `before_model_request` compaction of the user's own."""

    make_compaction = KeepTaskAndLastStep


class TestOwnCapabilityStreamingContract(StreamedContract):
    """`run_stream_sync` and `run_stream_events` with the same compaction."""

    make_compaction = KeepTaskAndLastStep
