"""RemoteMemRM against a fake vLLM (httpx.MockTransport): wire format, retries, failures.

The fake speaks vLLM 0.32's schemas (`/v1/models`, `/tokenize`, `/generative_scoring`) with a
character-level tokenizer, and computes each score from the token ids it receives, so a test
can tell whether the client sent the right (left-cut) ids and put the answers back in order.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from memguard import CompactionEvent, Guard, Verdict
from memguard.protocol import summary_message
from memguard.scoring.remote import RemoteMemRM, RemoteScorerError
from tests.doubles import FactPolicy, swe_conversation

Y_ID, N_ID = 809, 451
URL = "http://rm.test"
SECRET = "the user's password is hunter2-and-more-secret-text"


def encode(text: str) -> list[int]:
    """Char-level ids; a trailing label is one token, like Qwen's " Y"/" N"."""
    for label, token in ((" Y", Y_ID), (" N", N_ID)):
        if text.endswith(label):
            return encode(text[: -len(label)]) + [token]
    return [1000 + ord(c) for c in text]


def fake_p(ids: list[int]) -> float:
    """What the fake model answers for a prompt: depends on every id, order included."""
    return 1 / (1 + math.exp(-((sum(i * (k + 1) for k, i in enumerate(ids)) % 1000) / 100 - 5)))


class FakeVLLM:
    """A scripted vLLM. `override(path, n)` lets a test replace the next n answers on a path."""

    def __init__(
        self, *, max_model_len: int = 40_000, encoder: Callable[[str], list[int]] = encode
    ):
        self.max_model_len = max_model_len
        self.encoder = encoder
        self.calls: Counter[str] = Counter()
        self.requests: list[tuple[str, Any]] = []
        self.overrides: dict[str, list[Callable[[httpx.Request], httpx.Response]]] = {}

    def override(self, path: str, *answers: Callable[[httpx.Request], httpx.Response]) -> None:
        self.overrides.setdefault(path, []).extend(answers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls[path] += 1
        body = json.loads(request.content) if request.content else None
        self.requests.append((path, body))
        if self.overrides.get(path):
            return self.overrides[path].pop(0)(request)
        if path == "/v1/models":
            base = {"id": "base-model", "root": "/models/base", "parent": None}
            lora = {"id": "memrm", "root": "/adapters/checkpoint-500", "parent": "base-model"}
            cards = [base | {"max_model_len": self.max_model_len}, lora | {"max_model_len": None}]
            return httpx.Response(200, json={"object": "list", "data": cards})
        if path == "/tokenize":
            tokens = self.encoder(body["prompt"])
            return httpx.Response(
                200,
                json={"count": len(tokens), "max_model_len": self.max_model_len, "tokens": tokens},
            )
        if path == "/generative_scoring":
            assert (
                body["query"] == []
                and body["label_token_ids"] == [N_ID, Y_ID]
                and body["apply_softmax"]
            )
            data = [
                {"index": i, "object": "score", "score": fake_p(item)}
                for i, item in enumerate(body["items"])
            ]
            n = sum(len(item) for item in body["items"])
            usage = {
                "prompt_tokens": n,
                "total_tokens": n + len(data),
                "completion_tokens": len(data),
            }
            reply = {"id": "x", "object": "list", "model": body["model"], "usage": usage}
            return httpx.Response(200, json=reply | {"data": data[::-1]})  # any order
        return httpx.Response(404, json={"detail": "Not Found"})


def make(fake: FakeVLLM, **kwargs: Any) -> RemoteMemRM:
    transport = httpx.MockTransport(fake)
    kwargs.setdefault("backoff", 0.0)
    return RemoteMemRM(URL, transport=transport, async_transport=transport, **kwargs)


def answer(
    status: int, body: Any = None, *, raw: bytes | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    if raw is not None:
        return lambda request: httpx.Response(status, content=raw)
    return lambda request: httpx.Response(status, json=body)


def fail_with(exc_type: type[Exception]) -> Callable[[httpx.Request], httpx.Response]:
    def raise_(request: httpx.Request) -> httpx.Response:
        raise exc_type("simulated", request=request)

    return raise_


PROMPTS = [
    "[User]\nfix the bug\n\nAnswer:",
    "[User]\n" + "x" * 50 + "\n\nAnswer:",
    "[Tool]\nok\n\nAnswer:",
]


# -- the happy path --------------------------------------------------------------------------


def test_scores_follow_the_served_model_in_request_order_with_left_cut() -> None:
    fake = FakeVLLM()
    with make(fake, max_length=20, batch_size=2) as rm:
        scores = rm.score(PROMPTS)
    for prompt, score in zip(PROMPTS, scores, strict=True):
        ids = encode(prompt)
        kept = ids[-19:]  # max_length counts the label's position too (scoring.cut)
        assert score.p_harmful == pytest.approx(fake_p(kept), abs=1e-12)
        assert (score.n_tokens, score.n_truncated) == (len(kept), len(ids) - len(kept))
    assert scores[0].p_harmful != scores[1].p_harmful
    sent = [body["items"] for path, body in fake.requests if path == "/generative_scoring"]
    assert [len(items) for items in sent] == [2, 1]  # batch_size respected
    assert sent[0][1] == encode(PROMPTS[1])[-19:]  # the end (judgment turn) is what is kept


async def test_async_gives_the_same_scores_as_sync() -> None:
    fake = FakeVLLM()
    with make(fake) as rm:
        expected = rm.score(PROMPTS)
    async with make(FakeVLLM()) as arm:
        got = await arm.ascore(PROMPTS)
    assert got == expected


def test_model_card_and_label_ids_are_fetched_once_and_cached() -> None:
    fake = FakeVLLM()
    rm = make(fake)
    assert rm.identity.base.startswith("vllm@")  # before connecting: no I/O, names the endpoint
    rm.score(PROMPTS[:1])
    rm.score(PROMPTS[1:])
    assert fake.calls["/v1/models"] == 1
    assert fake.calls["/tokenize"] == 5 + len(PROMPTS)  # 5 label checks once, then one per prompt
    assert rm.label_ids == (Y_ID, N_ID)
    assert rm.identity.base == "base-model" and rm.identity.adapter == "/adapters/checkpoint-500"
    rm.close()


def test_empty_batch_makes_no_request() -> None:
    fake = FakeVLLM()
    assert make(fake).score([]) == []
    assert not fake.calls


def test_server_context_shorter_than_max_length_cuts_to_what_it_can_read(caplog) -> None:
    fake = FakeVLLM(max_model_len=16)
    scores = make(fake, max_length=100).score(PROMPTS[1:2])
    assert scores[0].n_tokens == 15  # one position stays free for the generated token
    assert scores[0].n_truncated == len(encode(PROMPTS[1])) - 15
    assert "max_model_len=16" in caplog.text


def test_api_key_is_sent_and_v1_suffix_is_dropped() -> None:
    seen: list[httpx.Request] = []
    fake = FakeVLLM()

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return fake(request)

    rm = RemoteMemRM(URL + "/v1/", api_key="k123", transport=httpx.MockTransport(spy))
    rm.score(PROMPTS[:1])
    assert all(r.headers["authorization"] == "Bearer k123" for r in seen)
    assert {r.url.path for r in seen} == {"/v1/models", "/tokenize", "/generative_scoring"}


# -- configuration errors --------------------------------------------------------------------


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(RemoteScorerError, match="does not serve model 'other'.*memrm") as err:
        make(FakeVLLM(), model="other").connect()
    assert err.value.status == 404


def test_multi_token_label_is_refused() -> None:
    split = FakeVLLM(encoder=lambda text: [1000 + ord(c) for c in text])  # " Y" -> 2 tokens
    with pytest.raises(RemoteScorerError, match="single token"):
        make(split).score(PROMPTS)


def test_label_merging_with_answer_colon_is_refused() -> None:
    def merging(text: str) -> list[int]:
        return [7] if text.endswith(":" + " Y") else encode(text)  # ':' + ' Y' fuse into one id

    with pytest.raises(RemoteScorerError, match="merges a label"):
        make(FakeVLLM(encoder=merging)).connect()


@pytest.mark.parametrize(
    "bad", [dict(base_url="localhost:8000"), dict(timeout=0), dict(retries=-1), dict(max_length=0)]
)
def test_bad_arguments(bad: dict[str, Any]) -> None:
    kwargs = dict(base_url=URL) | bad
    with pytest.raises(ValueError):
        RemoteMemRM(kwargs.pop("base_url"), **kwargs)


def test_prompts_must_be_a_list_of_strings() -> None:
    rm = make(FakeVLLM())
    with pytest.raises(TypeError):
        rm.score("one prompt")  # type: ignore[arg-type]


# -- retries ---------------------------------------------------------------------------------


def test_5xx_is_retried_then_succeeds() -> None:
    fake = FakeVLLM()
    fake.override(
        "/generative_scoring", answer(503, {"error": {"message": "busy", "type": "x", "code": 503}})
    )
    fake.override("/generative_scoring", answer(500, raw=b"oops"))
    scores = make(fake, retries=2).score(PROMPTS[:1])
    assert fake.calls["/generative_scoring"] == 3
    assert scores[0].p_harmful == pytest.approx(fake_p(encode(PROMPTS[0])))


def test_persistent_5xx_gives_up_with_status() -> None:
    fake = FakeVLLM()
    fake.override("/generative_scoring", *[answer(502, {"detail": "bad gateway"})] * 5)
    with pytest.raises(
        RemoteScorerError, match=r"HTTP 502 \(bad gateway\) after 3 attempts"
    ) as err:
        make(fake, retries=2).score(PROMPTS[:1])
    assert err.value.status == 502 and err.value.endpoint == "/generative_scoring"
    assert fake.calls["/generative_scoring"] == 3


def test_4xx_is_not_retried() -> None:
    fake = FakeVLLM()
    body = {
        "error": {
            "message": "The decoder prompt cannot be empty",
            "type": "BadRequestError",
            "code": 400,
        }
    }
    fake.override("/generative_scoring", answer(400, body))
    with pytest.raises(
        RemoteScorerError, match="HTTP 400 .BadRequestError: The decoder prompt"
    ) as err:
        make(fake, retries=3).score(PROMPTS[:1])
    assert err.value.status == 400
    assert fake.calls["/generative_scoring"] == 1


@pytest.mark.parametrize(
    "exc", [httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError]
)
def test_connection_errors_are_retried(exc: type[Exception]) -> None:
    fake = FakeVLLM()
    fake.override("/tokenize", fail_with(exc))
    assert len(make(fake, retries=1).score(PROMPTS[:1])) == 1


def test_connection_refused_gives_up_after_retries_with_backoff() -> None:
    fake = FakeVLLM()
    fake.override("/v1/models", *[fail_with(httpx.ConnectError)] * 3)
    start = time.monotonic()
    with pytest.raises(
        RemoteScorerError, match="could not reach the server.*after 3 attempts"
    ) as err:
        make(fake, retries=2, backoff=0.05).score(PROMPTS[:1])
    elapsed = time.monotonic() - start
    assert 0.05 + 0.1 <= elapsed < 2.0  # slept 0.05 then 0.1, no more
    assert err.value.status is None


def test_read_timeout_is_not_retried() -> None:
    fake = FakeVLLM()
    fake.override("/generative_scoring", fail_with(httpx.ReadTimeout))
    with pytest.raises(RemoteScorerError, match="no answer within the 3 s timeout"):
        make(fake, retries=3, timeout=3).score(PROMPTS[:1])
    assert fake.calls["/generative_scoring"] == 1


async def test_async_retries_and_errors_match_sync() -> None:
    fake = FakeVLLM()
    fake.override("/generative_scoring", answer(503, {}), answer(404, {"detail": "gone"}))
    with pytest.raises(RemoteScorerError, match=r"HTTP 404 \(gone\)") as err:
        await make(fake, retries=2).ascore(PROMPTS[:1])
    assert err.value.status == 404 and fake.calls["/generative_scoring"] == 2


# -- malformed answers -----------------------------------------------------------------------


def _scoring(data: Any, usage: Any = None) -> Callable[[httpx.Request], httpx.Response]:
    body: dict[str, Any] = {"data": data}
    if usage is not None:
        body["usage"] = usage
    return answer(200, body)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (answer(200, raw=b"<html>proxy error</html>"), "not JSON"),
        (answer(200, ["a", "list"]), "expected a JSON object"),
        (answer(200, {"object": "list"}), "'data' is missing"),
        (_scoring([]), "0 scores for 1 prompts"),
        (_scoring([{"index": 0}]), "not a number"),
        (_scoring([{"index": 0, "score": "0.3"}]), "not a number"),
        (_scoring([{"index": 0, "score": True}]), "not a number"),
        (answer(200, raw=b'{"data": [{"index": 0, "score": NaN}]}'), "not a probability"),
        (answer(200, raw=b'{"data": [{"index": 0, "score": Infinity}]}'), "not a probability"),
        (_scoring([{"index": 0, "score": 1.5}]), "not a probability"),
        (_scoring([{"index": 3, "score": 0.5}]), "bad or repeated item index 3"),
        (_scoring([{"score": 0.5}]), "bad or repeated item index None"),
        (_scoring([{"index": 0, "score": 0.5}], {"prompt_tokens": 5}), "cut the prompts itself"),
    ],
)
def test_malformed_scoring_answers_are_clear_errors(reply: Any, reason: str) -> None:
    fake = FakeVLLM()
    fake.override("/generative_scoring", reply)
    with pytest.raises(RemoteScorerError, match=reason) as err:
        make(fake).score(PROMPTS[:1])
    assert err.value.endpoint == "/generative_scoring"
    assert fake.calls["/generative_scoring"] == 1  # a 200 with a bad body is not retried


@pytest.mark.parametrize(
    ("path", "reply", "reason"),
    [
        ("/tokenize", answer(200, {"count": 1}), "'tokens' is missing"),
        ("/tokenize", answer(200, {"tokens": [1, "2"]}), "'tokens' is missing or not a list"),
        ("/tokenize", answer(200, {"tokens": [1], "max_model_len": "big"}), "max_model_len"),
        ("/v1/models", answer(200, {"data": "memrm"}), "'data' is missing"),
    ],
)
def test_malformed_metadata_answers_are_clear_errors(path: str, reply: Any, reason: str) -> None:
    fake = FakeVLLM()
    fake.override(path, reply)
    with pytest.raises(RemoteScorerError, match=reason):
        make(fake).score(PROMPTS[:1])


# -- privacy ---------------------------------------------------------------------------------


def test_error_messages_never_quote_the_prompt() -> None:
    fake = FakeVLLM()
    prompt = f"[User]\n{SECRET}\n\nAnswer:"
    labels_done = 5  # the label checks go first; the prompt's own /tokenize call is the 6th

    def echo(request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["prompt"]
        return httpx.Response(422, json={"detail": f"validation failed for input {text!r}"})

    fake.override("/tokenize", *[lambda r: fake_tokenize(fake, r)] * labels_done, echo)
    with pytest.raises(RemoteScorerError) as err:
        make(fake).score([prompt])
    assert err.value.status == 422
    assert "hunter2" not in str(err.value) and "withheld" in str(err.value)


def fake_tokenize(fake: FakeVLLM, request: httpx.Request) -> httpx.Response:
    tokens = fake.encoder(json.loads(request.content)["prompt"])
    return httpx.Response(200, json={"tokens": tokens, "max_model_len": fake.max_model_len})


# -- lifecycle -------------------------------------------------------------------------------


async def test_clients_are_pooled_and_closed() -> None:
    rm = make(FakeVLLM())
    rm.score(PROMPTS[:1])
    await rm.ascore(PROMPTS[:1])
    sync_client, async_client = rm._client, rm._aclient
    assert sync_client is not None and async_client is not None
    rm.score(PROMPTS[:1])
    assert rm._client is sync_client  # one pooled client, not one per call
    await rm.aclose()
    assert sync_client.is_closed and async_client.is_closed


async def test_concurrent_ascore_calls_share_the_client() -> None:
    fake = FakeVLLM()
    async with make(fake) as rm:
        results = await asyncio.gather(*(rm.ascore([p]) for p in PROMPTS))
    assert [r[0].p_harmful for r in results] == [pytest.approx(fake_p(encode(p))) for p in PROMPTS]


# -- with the guard ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_error", "verdict"), [("open", Verdict.COMMIT), ("closed", Verdict.VETO)]
)
def test_guard_uses_remote_scorer_unchanged(on_error: str, verdict: Verdict) -> None:
    conversation = swe_conversation(n_turns=12, fact="FACT-42", fact_turn=1)
    candidate = [*conversation[:2], summary_message("The agent looked around."), *conversation[-4:]]
    compaction = CompactionEvent(before=conversation, candidate=candidate, strategy="summary")

    fake = FakeVLLM()
    scored = Guard(make(fake), on_error=on_error).review(compaction, FactPolicy("FACT-42"))
    assert scored.error is None and scored.p_harmful is not None
    assert scored.scorer is not None and scored.scorer.adapter == "/adapters/checkpoint-500"
    assert fake.calls["/generative_scoring"] >= 1

    down = FakeVLLM()
    down.override("/v1/models", *[fail_with(httpx.ConnectError)] * 3)
    failed = Guard(make(down, retries=2), on_error=on_error).review(
        compaction, FactPolicy("FACT-42")
    )
    assert failed.verdict is verdict
    assert failed.error and failed.error.startswith("RemoteScorerError: ")
    assert failed.scorer is not None and failed.scorer.base == f"vllm@{URL}"


# -- over real loopback sockets (keep-alive pools, event loops, a server that goes away) -------


class LoopbackServer:
    """FakeVLLM behind a real HTTP/1.1 server on 127.0.0.1, in a thread."""

    def __init__(self, fake: FakeVLLM, delay: float = 0.0) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from threading import Thread

        open_connections = self.connections = set()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like vLLM's uvicorn

            def setup(self) -> None:
                super().setup()
                open_connections.add(self.connection)

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                time.sleep(delay if self.path == "/generative_scoring" else 0.0)
                request = httpx.Request(self.command, "http://x" + self.path, content=body)
                reply = fake(request)
                reply.read()
                self.send_response(reply.status_code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Like a killed server: stop listening and drop the kept-alive connections too."""
        import socket

        self.httpd.shutdown()
        self.httpd.server_close()
        for connection in list(self.connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_one_scorer_serves_successive_event_loops() -> None:
    server = LoopbackServer(FakeVLLM())
    try:
        rm = RemoteMemRM(server.url, backoff=0.0)
        first = asyncio.run(rm.ascore(PROMPTS))
        second = asyncio.run(rm.ascore(PROMPTS))  # a new loop: the old pool must not be reused
        assert first == second == rm.score(PROMPTS)
        rm.close()
    finally:
        server.stop()


def test_server_going_away_fails_fast_over_real_sockets() -> None:
    server = LoopbackServer(FakeVLLM())
    rm = RemoteMemRM(server.url, retries=2, backoff=0.05, timeout=5)
    assert len(rm.score(PROMPTS[:1])) == 1  # leaves a keep-alive connection in the pool
    server.stop()
    began = time.monotonic()
    with pytest.raises(RemoteScorerError, match="could not reach the server") as err:
        rm.score(PROMPTS[:1])
    assert time.monotonic() - began < 3 and err.value.status is None
    rm.close()


def test_slow_server_times_out_over_real_sockets() -> None:
    server = LoopbackServer(FakeVLLM(), delay=2.0)
    try:
        rm = RemoteMemRM(server.url, retries=3, timeout=0.3)
        began = time.monotonic()
        with pytest.raises(RemoteScorerError, match="no answer within the 0.3 s timeout"):
            rm.score(PROMPTS[:1])
        assert time.monotonic() - began < 1.5  # not retried: one timeout, not four
        rm.close()
    finally:
        server.stop()


# -- the base model alone is not MemRM ---------------------------------------------------------------


def test_the_base_model_without_an_adapter_is_refused_unless_merged() -> None:
    with pytest.raises(RemoteScorerError, match="serves 'base-model' as a plain model") as err:
        make(FakeVLLM(), model="base-model").score(PROMPTS[:1])
    assert "adapters served now: ['memrm']" in str(err.value) and "--remote-model" in str(err.value)
    rm = make(FakeVLLM(), model="base-model", merged_adapter=True)  # the adapter merged into its weights
    assert rm.score(PROMPTS[:1])[0].p_harmful == pytest.approx(fake_p(encode(PROMPTS[0])))
    assert rm.identity.base == "/models/base" and rm.identity.adapter is None


# -- credentials never recorded ------------------------------------------------------------------------


def test_redact_url() -> None:
    from memguard.scoring.urls import redact_url, url_secrets

    url = "https://alice:pa%24%24word@proxy.example:8443/rm/?api_key=sk-1234&region=eu&x-amz-signature=abcd&flag"
    assert redact_url(url) == "https://proxy.example:8443/rm/?api_key=REDACTED&region=eu&x-amz-signature=REDACTED&flag"
    assert {"alice:pa%24%24word", "pa$$word", "sk-1234", "abcd"} <= set(url_secrets(url))
    assert redact_url("http://[::1]:8000") == "http://[::1]:8000"
    assert redact_url("http://TOKEN123456@h") == "http://h"


def test_credentials_in_the_url_reach_the_server_and_nothing_else(caplog) -> None:
    """Before: `identity` (hence every Decision, redacted ones too), errors and logs carried them."""
    seen: list[httpx.Request] = []
    fake = FakeVLLM()

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return fake(request)

    secret = "s3cret-pw-4711"
    url = f"http://alice:{secret}@rm.test:8000"
    rm = RemoteMemRM(url, transport=httpx.MockTransport(spy), backoff=0.0)
    assert rm.base_url == "http://rm.test:8000" and secret not in repr(rm)
    assert secret not in rm.identity.model_dump_json()  # before connecting it names the endpoint
    rm.score(PROMPTS[:1])
    assert all(r.headers["authorization"].startswith("Basic ") for r in seen)  # the proxy still gets them

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url} (alice:{secret})", request=request)

    broken = RemoteMemRM(url, transport=httpx.MockTransport(refused), retries=1, backoff=0.0)
    conversation = swe_conversation(n_turns=8, fact="FACT-42", fact_turn=1)
    candidate = [*conversation[:2], summary_message("The agent looked around."), *conversation[-2:]]
    decision = Guard(broken, on_error="open").review(CompactionEvent(before=conversation, candidate=candidate),
                                                     FactPolicy("FACT-42"))
    assert decision.error and "could not reach the server" in decision.error
    for record in (decision.to_record(), decision.to_record(redact=True)):
        assert secret not in json.dumps(record, default=str) and "alice" not in json.dumps(record, default=str)
    assert secret not in caplog.text
    with pytest.raises(RemoteScorerError) as err:
        broken.score(PROMPTS[:1])
    assert secret not in str(err.value) and "REDACTED" in str(err.value)


# -- max_concurrency is the scorer's, across calls, threads and loops ---------------------------------


class InFlight:
    """Counts requests in flight across threads and loops; each one takes a little while."""

    def __init__(self, fake: FakeVLLM, seconds: float = 0.02) -> None:
        self.fake, self.seconds = fake, seconds
        self.lock = threading.Lock()
        self.now = self.peak = 0

    def _enter(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def _leave(self) -> None:
        with self.lock:
            self.now -= 1

    def sync(self, request: httpx.Request) -> httpx.Response:
        self._enter()
        try:
            time.sleep(self.seconds)
            return self.fake(request)
        finally:
            self._leave()

    async def async_(self, request: httpx.Request) -> httpx.Response:
        self._enter()
        try:
            await asyncio.sleep(self.seconds)
            return self.fake(request)
        finally:
            self._leave()


def test_max_concurrency_bounds_every_call_sync_and_async_together() -> None:
    """Before: a semaphore per ascore call (10 requests at once with max_concurrency=2), none for sync."""
    counter = InFlight(FakeVLLM())
    rm = RemoteMemRM(URL, max_concurrency=2, transport=httpx.MockTransport(counter.sync),
                     async_transport=httpx.MockTransport(counter.async_))
    rm.connect()
    want = [pytest.approx(fake_p(encode(p))) for p in PROMPTS]
    results: dict[str, Any] = {}

    def threads() -> None:
        def work(k: int) -> None:
            results[f"t{k}"] = [s.p_harmful for s in rm.score(PROMPTS)]
        pool = [threading.Thread(target=work, args=(k,)) for k in range(3)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    async def tasks() -> None:
        got = await asyncio.gather(*(rm.ascore(PROMPTS) for _ in range(5)))
        results.update({f"a{k}": [s.p_harmful for s in g] for k, g in enumerate(got)})

    side = threading.Thread(target=threads)
    side.start()
    asyncio.run(tasks())
    side.join()
    assert len(results) == 8 and all(r == want for r in results.values())
    assert counter.peak == 2  # bounded, and the bound was reached
    assert rm._limit.held == 0


async def test_a_cancelled_waiter_gives_no_slot_away() -> None:
    from memguard.scoring.limit import SharedLimit

    limit = SharedLimit(1)
    await limit.aacquire()
    waiter = asyncio.ensure_future(limit.aacquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limit.release()
    assert limit.held == 0
    await asyncio.wait_for(limit.aacquire(), 1)  # the slot is free again
    limit.release()
