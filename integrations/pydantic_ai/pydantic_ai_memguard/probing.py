"""Asking the agent's own model for its next step, and serving that answer as the real step.

A probe is the request the agent loop would send on a context: the same model, settings and
request parameters (tools, output schema, instructions), the messages prepared as the loop
prepares them (`requests.outgoing`), streamed when the run streams. `ProbeServer` keeps the
winning probe of a review until the loop sends its own request: `ServingModel`, the model wrapper
`MemGuardCompaction` puts around the model serving each request, answers that request with the
probe only when the two are the same request (`requests.request_key`: messages, settings, tools
and output schema) in the same run; any other request goes to the model. So a review costs one
extra model call where the next request follows the compaction, and never hands a step an answer
to a request it did not make. In audit mode `ProbeServer.watch` reports the run's next own request
and its answer: the agent's next step on the compacted context, when it is that request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai._run_context import get_current_run_context
from pydantic_ai.messages import ModelMessage, ModelResponse, ModelResponseStreamEvent
from pydantic_ai.models import CompletedStreamedResponse, Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import RunContext

from pydantic_ai_memguard.requests import outgoing, request_key

__all__ = ["Observed", "Probe", "ProbeServer", "ServingModel", "probe"]


@dataclass(frozen=True)
class Probe:
    """A model's answer to one request, and the request's match key."""

    response: ModelResponse
    """The model's answer."""
    key: str
    """The request's `request_key`: the answer may serve only a request with this key."""
    events: list[ModelResponseStreamEvent] | None = field(default=None, compare=False)  # when it streamed
    """The stream events, replayed when the probe serves a streamed request (None: not streamed)."""


async def probe(
    model: Model,
    messages: Sequence[ModelMessage],
    settings: ModelSettings | None,
    parameters: ModelRequestParameters,
    *,
    stream: bool = False,
    run_context: RunContext[Any] | None = None,
) -> Probe:
    """Send `model` the request the agent loop would send on `messages`.

    The messages are prepared as the loop prepares them (`outgoing`); the request is keyed with
    `request_key`, so its answer can serve the loop's own request only if it is the same one.

    Args:
        model: The agent's model.
        messages: The context to probe.
        settings: The request's model settings.
        parameters: The request's parameters (tools, output schema, instructions).
        stream: Stream the request, as the run does, and keep its events for a replay.
        run_context: The run's context, passed to a streamed request as the loop passes it.

    Returns:
        The answer and its match key.
    """
    sent, parameters = outgoing(model, messages, settings, parameters)
    key = request_key(model, sent, settings, parameters)
    if not stream:
        return Probe(await model.request(sent, settings, parameters), key)
    events: list[ModelResponseStreamEvent] = []
    async with model.request_stream(sent, settings, parameters, run_context) as streamed:
        async for event in streamed:
            events.append(event)
    return Probe(streamed.get(), key, events)


@dataclass(frozen=True)
class Observed:
    """A run's own request as the model received it, and the answer it got (audit mode).

    When it is the request the compacted context makes, its answer is the proposed action, and
    no probe is needed for it.
    """

    messages: list[ModelMessage]
    """The messages the model received."""
    settings: ModelSettings | None
    """The request's model settings."""
    parameters: ModelRequestParameters
    """The request's parameters."""
    response: ModelResponse
    """The model's answer."""


class ProbeServer:
    """The probes waiting for a run's own request, and the audits watching for it.

    Shared by every per-run copy of one capability; keyed by run id, so concurrent runs never see
    each other's probes. `finish(run_id)` at the end of a run drops what was not used.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._probes: dict[str | None, list[Probe]] = {}
        self._watches: dict[str | None, list[asyncio.Future[Observed]]] = {}

    def offer(self, run_id: str | None, winner: Probe) -> None:
        """Keep `winner` for this run's next request that is the same request.

        Args:
            run_id: The run's id.
            winner: The probe on the context the review chose.
        """
        with self._lock:
            self._probes.setdefault(run_id, []).append(winner)

    def watch(self, run_id: str | None) -> asyncio.Future[Observed]:
        """Watch for this run's next own request and its answer (audit mode).

        Args:
            run_id: The run's id.

        Returns:
            A future for the request and its answer; cancelled if the request fails or the run
            ends without one.
        """
        future: asyncio.Future[Observed] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._watches.setdefault(run_id, []).append(future)
        return future

    def has_probes(self, run_id: str | None) -> bool:
        """Whether probes wait for this run: when none does, a request's key is not computed.

        Args:
            run_id: The run's id.

        Returns:
            True when at least one probe waits.
        """
        with self._lock:
            return bool(self._probes.get(run_id))

    def take(self, run_id: str | None, key: str) -> Probe | None:
        """Remove and return the waiting probe that answers the request `key`.

        Args:
            run_id: The run's id.
            key: The request's `request_key`.

        Returns:
            The probe, or None when none of this run's probes is that request.
        """
        with self._lock:
            waiting = self._probes.get(run_id, [])
            for index, candidate in enumerate(waiting):
                if candidate.key == key:
                    del waiting[index]
                    return candidate
        return None

    def watches(self, run_id: str | None) -> list[asyncio.Future[Observed]]:
        """Remove and return the watches waiting for this run's next request.

        Args:
            run_id: The run's id.

        Returns:
            The futures to settle with the request (O(1) when there are none).
        """
        with self._lock:
            return self._watches.pop(run_id, []) if run_id in self._watches else []

    def finish(self, run_id: str | None) -> list[Probe]:
        """Forget a finished run: watches that saw nothing are cancelled.

        Args:
            run_id: The run's id.

        Returns:
            The probes never served (real requests, to bill to the run).
        """
        with self._lock:
            unserved = self._probes.pop(run_id, [])
            watches = self._watches.pop(run_id, [])
        for future in watches:
            future.cancel()
        return unserved


def _settle(watches: list[asyncio.Future[Observed]], observed: Observed | None) -> None:
    for future in watches:
        if future.done():
            continue
        if observed is None:
            future.cancel()
        else:
            future.set_result(observed)


class ServingModel(WrapperModel):
    """The model serving a run's request, in front of which waiting probes are served.

    A request identical to a waiting probe of the same run (`request_key`) is answered with the
    probe (as a replayed stream in streamed runs); every other request goes to the wrapped model.
    A step is never handed an answer to a request it did not make.

    Args:
        wrapped: The model that serves the run's requests.
        server: The probes waiting, and the audits watching, per run.
    """

    def __init__(self, wrapped: Model, server: ProbeServer) -> None:
        super().__init__(wrapped)
        self.server = server
        """The probes waiting, and the audits watching, per run."""

    def _served(
        self, messages: list[ModelMessage], settings: ModelSettings | None, parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None,
    ) -> tuple[str | None, Probe | None]:
        context = run_context or get_current_run_context()
        run_id = context.run_id if context is not None else None
        if not self.server.has_probes(run_id):  # nothing waits: no key is computed
            return run_id, None
        return run_id, self.server.take(run_id, request_key(self.wrapped, messages, settings, parameters))

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        """Answer with the waiting probe when it is this very request, else ask the wrapped model.

        See `pydantic_ai.models.Model.request`.

        Returns:
            The probe's response, or the wrapped model's.
        """
        run_id, served = self._served(messages, model_settings, model_request_parameters, None)
        if served is not None:
            return served.response
        watches = self.server.watches(run_id)
        try:
            response = await super().request(messages, model_settings, model_request_parameters)
        except BaseException:
            _settle(watches, None)
            raise
        _settle(watches, Observed(messages, model_settings, model_request_parameters, response))
        return response

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncGenerator[StreamedResponse]:
        """`request` for a streamed request: a served probe is replayed as a stream.

        See `pydantic_ai.models.Model.request_stream`.

        Yields:
            The replayed probe, or the wrapped model's stream.
        """
        run_id, served = self._served(messages, model_settings, model_request_parameters, run_context)
        if served is not None:
            yield CompletedStreamedResponse(
                served.response,
                model_request_parameters=model_request_parameters,
                replay_events=served.events if served.events is not None else True,
            )
            return
        watches = self.server.watches(run_id)
        try:
            async with super().request_stream(
                messages, model_settings, model_request_parameters, run_context
            ) as stream:
                yield stream
        except BaseException:
            _settle(watches, None)
            raise
        _settle(watches, Observed(messages, model_settings, model_request_parameters, stream.get()))
