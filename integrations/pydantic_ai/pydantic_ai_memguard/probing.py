"""Asking the agent's own model for its next step, and serving that answer as the real step.

A probe is the request the agent loop would send, on another context: the same model, settings
and request parameters (tools, output schema, instructions), the history prepared by the model's
own `prepare_messages` as the loop does, streamed when the run streams. `ReplayModel` then serves
the winning probe as the step's model call, so a review costs one extra call, not two, while
every other capability hook and the loop's own bookkeeping still run. `ObservedModel` (audit
mode) passes the call through and reports the response it got.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import (
    CompletedStreamedResponse,
    Model,
    ModelRequestContext,
    ModelRequestParameters,
    StreamedResponse,
)
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import RunContext

__all__ = ["ObservedModel", "ReplayModel", "probe"]


async def probe(request_context: ModelRequestContext, messages: Sequence[ModelMessage],
                run_context: RunContext[Any] | None = None) -> ModelResponse:
    """The response of the request's model to `messages`, sent the way the agent loop sends it."""
    model = request_context.model
    parameters = request_context.model_request_parameters
    settings = request_context.model_settings or None
    prepared = model.prepare_messages(list(messages), parameters)
    if request_context.streaming:
        async with model.request_stream(prepared, settings, parameters, run_context) as stream:
            async for _event in stream:
                pass
        return stream.get()
    return await model.request(prepared, settings, parameters)


class ReplayModel(WrapperModel):
    """Answers this step's model call with a response already obtained (the winning probe).

    Only the first request is served from the probe; any later one (a continuation of a suspended
    response) goes to the wrapped model.
    """

    def __init__(self, wrapped: Model, response: ModelResponse) -> None:
        super().__init__(wrapped)
        self._response: ModelResponse | None = response

    def _take(self) -> ModelResponse | None:
        response, self._response = self._response, None
        return response

    async def request(self, messages: list[ModelMessage], model_settings: ModelSettings | None,
                      model_request_parameters: ModelRequestParameters) -> ModelResponse:
        response = self._take()
        if response is not None:
            return response
        return await super().request(messages, model_settings, model_request_parameters)

    @asynccontextmanager
    async def request_stream(self, messages: list[ModelMessage], model_settings: ModelSettings | None,
                             model_request_parameters: ModelRequestParameters,
                             run_context: RunContext[Any] | None = None) -> AsyncGenerator[StreamedResponse]:
        response = self._take()
        if response is not None:
            yield CompletedStreamedResponse(response, model_request_parameters=model_request_parameters,
                                            replay_events=True)
            return
        async with super().request_stream(messages, model_settings, model_request_parameters, run_context) as stream:
            yield stream


class ObservedModel(WrapperModel):
    """Passes this step's model call through and resolves `response` with what came back."""

    def __init__(self, wrapped: Model) -> None:
        super().__init__(wrapped)
        self.response: asyncio.Future[ModelResponse] = asyncio.get_running_loop().create_future()

    def _settle(self, result: ModelResponse | None, error: BaseException | None = None) -> None:
        if self.response.done():
            return
        if error is not None:
            self.response.set_exception(
                error if isinstance(error, Exception) else RuntimeError("model call interrupted")
            )
        elif result is not None:
            self.response.set_result(result)

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        try:
            response = await super().request(messages, model_settings, model_request_parameters)
        except BaseException as exc:
            self._settle(None, exc)
            raise
        self._settle(response)
        return response

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncGenerator[StreamedResponse]:
        try:
            async with super().request_stream(
                messages, model_settings, model_request_parameters, run_context
            ) as stream:
                yield stream
        except BaseException as exc:
            self._settle(None, exc)
            raise
        self._settle(stream.get())
