"""`RemoteMemRM`: score compactions on a vLLM server that serves MemRM as a LoRA adapter.

When many agent processes share one GPU pool, loading the RM into each of them wastes memory and
warm-up time; one vLLM server (or several replicas behind one URL) scores for all of them, with
prefix caching across agents. The guard cannot tell the difference: this class has `MemRM`'s
interface and gives the same numbers (tokenization and label ids come from the served tokenizer,
the left cut is `memguard.scoring.cut`'s rule as in-process, and the server reads token ids, not
text). Text is made safe before it is sent (`memguard.text.safe_text`: a lone surrogate scores as
U+FFFD, as in-process), and the URL is recorded without credentials (`memguard.scoring.urls`).

Each operation is written once as a generator that yields HTTP calls and receives their JSON
(`_score_flow`); a sync driver (httpx.Client) and an async one (httpx.AsyncClient) run it, so
`score` and `ascore` cannot drift apart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memguard.protocol import LABEL_HARMFUL, LABEL_SAFE
from memguard.scoring.base import Score, ScorerIdentity
from memguard.scoring.cut import Cut, check_cut, cut_starts, prompt_budget
from memguard.scoring.limit import SharedLimit
from memguard.scoring.urls import redact_url, scrub, url_secrets
from memguard.scoring.vllm_api import (
    LABEL_PROBE,
    MODELS_PATH,
    SCORING_PATH,
    TOKENIZE_PATH,
    LabelIds,
    RemoteScorerError,
    ServedModel,
    error_detail,
    label_ids,
    parse_scores,
    parse_served_model,
    parse_tokens,
    scoring_body,
    tokenize_body,
)
from memguard.settings import DEFAULT_MAX_LENGTH  # training's positions, as in MemRM
from memguard.text import safe_text

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_MAX_LENGTH", "RemoteMemRM", "RemoteScorerError"]

logger = logging.getLogger(__name__)

_MAX_BACKOFF_S = 8.0


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("RemoteMemRM needs httpx: pip install 'memguard[remote]'") from exc
    return httpx


@dataclass(frozen=True)
class _Call:
    """One HTTP request of a flow. `prompts` are the texts it carries, kept out of any error."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    prompts: tuple[str, ...] = ()


@dataclass
class _ServerInfo:
    model: ServedModel
    labels: LabelIds
    positions: int  # max_length, or the server's max_model_len when that is shorter


_Flow = Generator[list[_Call], list[Any], Any]


class RemoteMemRM:
    """MemRM behind a vLLM server: `score(prompts)` / `await ascore(prompts)` -> list[Score].

    Prompts must already be rendered with `memguard.protocol` (as for `MemRM`). The first call
    asks the server once for the model card and the label token ids and caches them
    (`connect()` / `await aconnect()` do it eagerly, to fail fast at start-up).

    Failures raise `RemoteScorerError` promptly: connection errors and 5xx answers are retried
    `retries` times with exponential backoff (`backoff`, 2*backoff, ... capped at 8 s); 4xx
    answers, read timeouts (a slow server is not helped by more load) and malformed answers are
    not. One HTTP call therefore takes at most about (retries + 1) * timeout + backoffs.

    A served model without an adapter (the base) is refused, since its numbers are not RM
    scores, unless `merged_adapter=True` says the adapter is merged into its weights.

    Args:
        base_url: The server's URL (``http(s)://host:port``, a trailing ``/v1`` is dropped).
            Credentials in it reach only the HTTP client: identity, errors and logs show the
            URL without them.
        model: The served name of MemRM's LoRA adapter (``--lora-modules memrm=...``).
        api_key: Sent as ``Authorization: Bearer <api_key>`` (None: no header).
        timeout: Seconds for each HTTP call.
        retries: Retries of a call after a connection error or a 5xx answer.
        backoff: Seconds before the first retry; doubled for each next one, at most 8 s.
        max_length: Token positions of a prompt and its label, as in training; longer prompts
            are cut from the left (a server with a shorter ``max_model_len`` cuts more, with a
            warning).
        batch_size: Prompts per scoring request.
        max_concurrency: Requests of this scorer in flight at once, across every thread, task
            and event loop that uses it.
        merged_adapter: The served model is the base with MemRM's adapter merged in.
        cut: How over-long prompts are cut, as for `MemRM` (`memguard.scoring.cut`).
        cut_block: The cut's block size in tokens, as for `MemRM`.
        transport: Replaces httpx's network layer for sync calls (``httpx.MockTransport`` in
            tests, a custom proxy setup).
        async_transport: The same for async calls.

    Raises:
        ValueError: `base_url` is not an http(s) URL, or a number is out of range (`timeout`
            <= 0, negative `retries` or `backoff`, `batch_size` or `max_concurrency` < 1, a bad
            `cut`).
        ImportError: httpx is not installed (``pip install 'memguard[remote]'``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "memrm",
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 0.5,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = 32,
        max_concurrency: int = 16,
        merged_adapter: bool = False,
        cut: Cut = "exact",
        cut_block: int = 1,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            shown = redact_url(base_url) if isinstance(base_url, str) else type(base_url).__name__
            raise ValueError(f"base_url must be an http(s) URL, not {shown!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        if retries < 0 or backoff < 0:
            raise ValueError("retries and backoff must be >= 0")
        if batch_size < 1 or max_concurrency < 1:
            raise ValueError("batch_size and max_concurrency must be >= 1")
        check_cut(cut, cut_block, max_length)
        self._httpx = _import_httpx()
        url = base_url.rstrip("/")
        if url.endswith("/v1"):  # vLLM's scoring routes live at the root, not under /v1
            url = url[: -len("/v1")]
        self._url = url  # with its credentials: only the HTTP client sees it
        self.base_url = redact_url(url)  # what identity, errors and logs show
        self._secrets = sorted({*url_secrets(url), *([api_key] if api_key else [])}, key=len, reverse=True)
        self.model = model
        self.merged_adapter = merged_adapter
        self.cut: Cut = cut
        self.cut_block = cut_block
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_length = max_length
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self._limit = SharedLimit(max_concurrency)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._transport = transport
        self._async_transport = async_transport
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None
        self._aclient_loop: asyncio.AbstractEventLoop | None = None
        self._info: _ServerInfo | None = None

    def __repr__(self) -> str:
        return f"RemoteMemRM({self.base_url!r}, model={self.model!r})"

    # -- public API -------------------------------------------------------------------------

    def score(self, prompts: list[str]) -> list[Score]:
        """P(HARMFUL) for each rendered prompt, in order.

        The first call asks the server for the model card and the label ids (`connect`).

        Args:
            prompts: Rendered MemRM prompts (any str: lone surrogates become U+FFFD before
                sending, as the in-process scorer reads them).

        Returns:
            One `Score` per prompt, in order.

        Raises:
            TypeError: `prompts` is a single string, or holds a non-string.
            ValueError: A prompt is empty.
            RemoteScorerError: The server could not give a usable score (unreachable, an HTTP
                error, a timeout, a malformed answer, a model that is not MemRM).
        """
        scores: list[Score] = self._run(self._score_flow(_check_prompts(prompts)))
        return scores

    async def ascore(self, prompts: list[str]) -> list[Score]:
        """Async `score`: tokenization and batches run concurrently on one pooled client.

        Args:
            prompts: Rendered MemRM prompts.

        Returns:
            One `Score` per prompt, in order.

        Raises:
            TypeError: `prompts` is a single string, or holds a non-string.
            ValueError: A prompt is empty.
            RemoteScorerError: As `score`.
        """
        scores: list[Score] = await self._arun(self._score_flow(_check_prompts(prompts)))
        return scores

    def connect(self) -> None:
        """Fetch and check the served model and label ids now (otherwise done on first use).

        Call it at start-up to fail fast on a wrong URL, model name or tokenizer.

        Raises:
            RemoteScorerError: The server is unreachable, does not serve `model`, serves it
                without an adapter (and `merged_adapter` is False), or its tokenizer does not
                give the labels one token each.
        """
        self._run(self._info_flow())

    async def aconnect(self) -> None:
        """`connect` from async code.

        Raises:
            RemoteScorerError: As `connect`.
        """
        await self._arun(self._info_flow())

    @property
    def identity(self) -> ScorerIdentity:
        """The served base model and adapter, as `/v1/models` names them.

        Never does I/O and never raises (the guard reads it even after a failed score): before
        the first successful call it names the endpoint instead, `vllm@<base_url>` + model.
        """
        if self._info is None:
            return ScorerIdentity(base=f"vllm@{self.base_url}", adapter=self.model)
        return ScorerIdentity(base=self._info.model.base, adapter=self._info.model.adapter)

    @property
    def label_ids(self) -> tuple[int, int]:
        """(safe_id, harmful_id) in the served tokenizer. Asks the server if not connected yet."""
        info = self._info or self._run(self._info_flow())
        return info.labels.safe, info.labels.harmful

    def close(self) -> None:
        """Close the pooled sync HTTP client; a later call opens a new one."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close both pooled HTTP clients; a later call opens new ones."""
        client, self._aclient = self._aclient, None
        if client is not None and self._aclient_loop is asyncio.get_running_loop():
            await client.aclose()  # a client of a finished loop has nothing left to close there
        self.close()

    def __enter__(self) -> RemoteMemRM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> RemoteMemRM:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- flows: what to ask, independent of sync/async ----------------------------------------

    def _info_flow(self) -> _Flow:
        if self._info is not None:
            return self._info
        (models,) = yield [_Call("GET", MODELS_PATH)]
        served = parse_served_model(models, self.model, merged_adapter=self.merged_adapter)
        texts = (
            LABEL_SAFE,
            LABEL_HARMFUL,
            LABEL_PROBE,
            LABEL_PROBE + LABEL_SAFE,
            LABEL_PROBE + LABEL_HARMFUL,
        )
        bodies = yield [_Call("POST", TOKENIZE_PATH, tokenize_body(self.model, t)) for t in texts]
        parsed = [parse_tokens(b) for b in bodies]
        labels = label_ids(*(tokens for tokens, _ in parsed))
        server_len = parsed[0][1] or served.max_model_len
        # vLLM's max_model_len counts the label's position, as max_length does (scoring.cut).
        positions = self.max_length if server_len is None else min(self.max_length, server_len)
        if positions < self.max_length:
            logger.warning(
                "vLLM serves %r with max_model_len=%s: prompts are cut to %s tokens, not %s "
                "(start vLLM with --max-model-len %s to match the in-process scorer)",
                self.model,
                server_len,
                prompt_budget(positions),
                prompt_budget(self.max_length),
                self.max_length,
            )
        self._info = _ServerInfo(model=served, labels=labels, positions=positions)
        return self._info

    def _score_flow(self, prompts: list[str]) -> _Flow:
        if not prompts:
            return []
        info = yield from self._info_flow()
        bodies = yield [
            _Call("POST", TOKENIZE_PATH, tokenize_body(self.model, p), (p,)) for p in prompts
        ]
        encoded = [parse_tokens(b)[0] for b in bodies]
        if any(not tokens for tokens in encoded):
            raise ValueError("cannot score an empty prompt (it has no tokens)")
        block = min(self.cut_block, max(1, prompt_budget(info.positions) // 2))  # a shorter server
        starts = cut_starts(encoded, info.positions, self.cut, block)
        cut = [(tokens[start:], start) for tokens, start in zip(encoded, starts, strict=True)]
        batches = [cut[i : i + self.batch_size] for i in range(0, len(cut), self.batch_size)]
        answers = yield [
            _Call(
                "POST", SCORING_PATH, scoring_body(self.model, [t for t, _ in batch], info.labels)
            )
            for batch in batches
        ]
        scores: list[Score] = []
        for batch, answer in zip(batches, answers, strict=True):
            probs = parse_scores(answer, len(batch), sum(len(t) for t, _ in batch))
            scores.extend(
                Score(p_harmful=p, n_tokens=len(t), n_truncated=n_cut)
                for p, (t, n_cut) in zip(probs, batch, strict=True)
            )
        return scores

    # -- drivers -------------------------------------------------------------------------------

    def _run(self, flow: _Flow) -> Any:
        try:
            calls = next(flow)
            while True:
                calls = flow.send([self._send(call) for call in calls])
        except StopIteration as stop:
            return stop.value

    async def _arun(self, flow: _Flow) -> Any:
        try:
            calls = next(flow)
            while True:
                calls = flow.send(list(await asyncio.gather(*(self._asend(c) for c in calls))))
        except StopIteration as stop:
            return stop.value

    def _sync_client(self) -> httpx.Client:
        if self._client is None:
            self._client = self._httpx.Client(
                base_url=self._url,
                headers=self._headers,
                timeout=self._httpx.Timeout(self.timeout),
                transport=self._transport,
            )
        return self._client

    def _async_client(self) -> httpx.AsyncClient:
        # Pooled connections belong to the event loop that opened them: a scorer reused under a
        # new loop (e.g. successive asyncio.run calls) gets a fresh client instead of errors.
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aclient_loop is not loop:
            self._aclient = self._httpx.AsyncClient(
                base_url=self._url,
                headers=self._headers,
                timeout=self._httpx.Timeout(self.timeout),
                transport=self._async_transport,
            )
            self._aclient_loop = loop
        return self._aclient

    def _request(self, call: _Call) -> httpx.Response:
        self._limit.acquire()  # in flight: this scorer's bound, across all its callers
        try:
            response: httpx.Response = self._sync_client().request(call.method, call.path, json=call.body)
            return response
        finally:
            self._limit.release()

    async def _arequest(self, call: _Call) -> httpx.Response:
        await self._limit.aacquire()
        try:
            response: httpx.Response = await self._async_client().request(call.method, call.path, json=call.body)
            return response
        finally:
            self._limit.release()

    def _send(self, call: _Call) -> Any:
        for attempt in range(self.retries + 1):
            try:
                response = self._request(call)
            except self._httpx.TransportError as exc:
                if not self._retryable(exc) or attempt == self.retries:
                    raise self._transport_error(call, exc, attempt) from exc
            else:
                if response.status_code < 500 or attempt == self.retries:
                    return self._decode(call, response, attempt)
            time.sleep(self._backoff_s(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _asend(self, call: _Call) -> Any:
        for attempt in range(self.retries + 1):
            try:
                response = await self._arequest(call)
            except self._httpx.TransportError as exc:
                if not self._retryable(exc) or attempt == self.retries:
                    raise self._transport_error(call, exc, attempt) from exc
            else:
                if response.status_code < 500 or attempt == self.retries:
                    return self._decode(call, response, attempt)
            await asyncio.sleep(self._backoff_s(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    # -- retry policy and error translation ----------------------------------------------------

    def _retryable(self, exc: Exception) -> bool:
        """Retry only when the request cannot have been processed or the connection dropped."""
        h = self._httpx
        if isinstance(exc, h.TimeoutException):
            return isinstance(exc, h.ConnectTimeout)
        return isinstance(exc, (h.ConnectError, h.ReadError, h.WriteError, h.RemoteProtocolError))

    def _backoff_s(self, attempt: int) -> float:
        return float(min(self.backoff * (2**attempt), _MAX_BACKOFF_S))

    def _transport_error(self, call: _Call, exc: Exception, attempt: int) -> RemoteScorerError:
        tries = f" after {attempt + 1} attempts" if attempt else ""
        if isinstance(exc, self._httpx.TimeoutException) and not isinstance(
            exc, self._httpx.ConnectTimeout
        ):
            what = f"no answer within the {self.timeout:g} s timeout ({type(exc).__name__})"
        else:
            what = f"could not reach the server ({type(exc).__name__}: {scrub(str(exc), self._secrets)})"
        return RemoteScorerError(
            f"{call.method} {self.base_url}{call.path}: {what}{tries}", endpoint=call.path
        )

    def _decode(self, call: _Call, response: httpx.Response, attempt: int) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = None
            if response.is_success:
                raise RemoteScorerError(
                    f"malformed response from {call.path}: not JSON (HTTP {response.status_code})",
                    status=response.status_code,
                    endpoint=call.path,
                ) from None
        if response.is_success:
            return body
        tries = f" after {attempt + 1} attempts" if attempt else ""
        raise RemoteScorerError(
            f"{call.method} {self.base_url}{call.path} failed with HTTP {response.status_code}"
            f"{scrub(error_detail(body, call.prompts), self._secrets)}{tries}",
            status=response.status_code,
            endpoint=call.path,
        )


def _check_prompts(prompts: Iterable[str]) -> list[str]:
    """A list of safe text, read once: a generator of prompts is consumed here, not half-way by
    the checks. Lone surrogates become U+FFFD (`memguard.text.safe_text`): JSON cannot carry them,
    and the in-process scorer reads the same replacement."""
    if isinstance(prompts, (str, bytes)):
        raise TypeError("prompts must be a list of rendered prompt strings, not one string")
    listed = list(prompts)
    if not all(isinstance(p, str) for p in listed):
        raise TypeError("prompts must be a list of rendered prompt strings")
    return [safe_text(p) for p in listed]
