"""vLLM's HTTP contract for MemRM scoring, with no I/O: request bodies in, validated values out.

Everything that touches the wire format lives here so the client (`remote.py`) only moves bytes,
and so every malformed answer becomes one clear `RemoteScorerError` instead of a KeyError or a
NaN that the guard would read as a verdict. Schemas follow vLLM 0.32's
`entrypoints/generate/generative_scoring/serving.py` and `entrypoints/serve/tokenize/protocol.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memguard.protocol import LABEL_HARMFUL, LABEL_SAFE, RESPONSE_PREFIX

TOKENIZE_PATH = "/tokenize"
SCORING_PATH = "/generative_scoring"
MODELS_PATH = "/v1/models"
# The end of every real prompt: the label must follow it as exactly one token (protocol §7).
LABEL_PROBE = "Answer Y if safe, N if harmful." + RESPONSE_PREFIX
_DETAIL_MAX_CHARS = 300
_QUOTE_WINDOW = 16  # a server message sharing this many chars with a prompt is withheld


class RemoteScorerError(RuntimeError):
    """The scoring server could not give a usable P(HARMFUL).

    Messages never quote prompt text or credentials, so they are safe to log and to put in
    audit records.

    Args:
        message: What went wrong, naming the request.
        status: The HTTP status when the server answered (None for connection failures,
            timeouts and malformed bodies).
        endpoint: The path that failed.
    """

    def __init__(self, message: str, *, status: int | None = None, endpoint: str | None = None):
        super().__init__(message)
        self.status = status
        """The HTTP status when the server answered, else None."""
        self.endpoint = endpoint
        """The path that failed (None: not known)."""


@dataclass(frozen=True)
class ServedModel:
    """What `/v1/models` says about the model we score with."""

    name: str
    base: str
    adapter: str | None
    max_model_len: int | None


@dataclass(frozen=True)
class LabelIds:
    """Token ids of the labels in the served tokenizer."""

    safe: int
    harmful: int


def tokenize_body(model: str, text: str) -> dict[str, Any]:
    """`/tokenize` request: raw text, no special tokens (the protocol adds no BOS)."""
    return {"model": model, "prompt": text, "add_special_tokens": False}


def scoring_body(model: str, prompts: Sequence[Sequence[int]], labels: LabelIds) -> dict[str, Any]:
    """`/generative_scoring` request that returns P(HARMFUL) for each pre-tokenized prompt.

    vLLM scores `query + item` and reports the softmax over `label_token_ids` of the *first*
    id, so an empty query, one item per prompt and the harmful id first give P(" N") against
    P(" Y"). Token ids (not text) are sent so the server reads exactly what we cut.
    """
    return {
        "model": model,
        "query": [],
        "items": [list(p) for p in prompts],
        "label_token_ids": [labels.harmful, labels.safe],
        "apply_softmax": True,
        "add_special_tokens": False,
    }


def _malformed(endpoint: str, what: str) -> RemoteScorerError:
    return RemoteScorerError(f"malformed response from {endpoint}: {what}", endpoint=endpoint)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_tokens(body: Any) -> tuple[list[int], int | None]:
    """Token ids and the server's max_model_len from a `/tokenize` response."""
    if not isinstance(body, dict):
        raise _malformed(TOKENIZE_PATH, f"expected a JSON object, got {type(body).__name__}")
    tokens = body.get("tokens")
    if not isinstance(tokens, list) or not all(_is_int(t) and t >= 0 for t in tokens):
        raise _malformed(TOKENIZE_PATH, "'tokens' is missing or not a list of token ids")
    limit = body.get("max_model_len")
    if limit is not None and (not _is_int(limit) or limit < 2):
        raise _malformed(TOKENIZE_PATH, f"'max_model_len' is not a usable length: {limit!r}")
    return tokens, limit


_NAME_IT = ("name the served adapter with RemoteMemRM(model=...), --remote-model on the command line, or "
            "model = \"...\" in the TOML [scorer] table")


def parse_served_model(body: Any, name: str, *, merged_adapter: bool = False) -> ServedModel:
    """Find `name` in a `/v1/models` listing; a LoRA card names its base as `parent`.

    Args:
        body: The `/v1/models` answer.
        name: The served model to score with.
        merged_adapter: Accept a card without a parent (a plain model): the caller says MemRM's
            adapter is merged into its weights. Otherwise such a card is the base model alone,
            whose numbers are not RM scores, and is refused.

    Returns:
        The card's name, base, adapter and context length.

    Raises:
        RemoteScorerError: The model is not served, or is served without an adapter.
    """
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not all(isinstance(card, dict) for card in data):
        raise _malformed(MODELS_PATH, "'data' is missing or not a list of model cards")
    served = [card.get("id") for card in data]
    card = next((c for c in data if c.get("id") == name), None)
    if card is None:
        raise RemoteScorerError(
            f"the server does not serve model {name!r}; it serves {served}. Start vLLM with "
            f"--enable-lora --lora-modules {name}=<adapter dir>/checkpoint-500, or {_NAME_IT}",
            status=404,
            endpoint=MODELS_PATH,
        )
    root, parent = card.get("root"), card.get("parent")
    if not parent and not merged_adapter:
        adapters = [c.get("id") for c in data if c.get("parent")]
        raise RemoteScorerError(
            f"the server serves {name!r} as a plain model, not as a LoRA adapter: without MemRM's "
            f"adapter its numbers are not RM scores. Serve the adapter (--enable-lora --lora-modules "
            f"memrm=<adapter dir>/checkpoint-500) and {_NAME_IT}"
            + (f" (adapters served now: {adapters})" if adapters else "")
            + ". If the adapter is merged into this model's weights, say so with merged_adapter=True "
            "(--merged-adapter; merged_adapter = true).",
            endpoint=MODELS_PATH,
        )
    limit = card.get("max_model_len")
    return ServedModel(
        name=name,
        base=str(parent or root or name),
        adapter=str(root) if parent and root else None,
        max_model_len=limit if _is_int(limit) else None,
    )


def label_ids(
    safe_alone: list[int],
    harmful_alone: list[int],
    probe: list[int],
    probe_safe: list[int],
    probe_harmful: list[int],
) -> LabelIds:
    """Check the served tokenizer encodes each label as one token, also right after `Answer:`.

    Arguments are the encodings of " Y", " N", LABEL_PROBE, LABEL_PROBE + " Y" and
    LABEL_PROBE + " N". A tokenizer that fails would make the scores refer to other tokens.
    """
    for label, alone in ((LABEL_SAFE, safe_alone), (LABEL_HARMFUL, harmful_alone)):
        if len(alone) != 1:
            raise RemoteScorerError(
                f"the served tokenizer encodes label {label!r} as {len(alone)} tokens {alone}; "
                "MemRM needs a single token. Serve the base model's own (Qwen3) tokenizer.",
                endpoint=TOKENIZE_PATH,
            )
    safe, harmful = safe_alone[0], harmful_alone[0]
    if safe == harmful:
        raise RemoteScorerError(
            f"the served tokenizer gives ' Y' and ' N' the same id {safe}", endpoint=TOKENIZE_PATH
        )
    if probe_safe != probe + [safe] or probe_harmful != probe + [harmful]:
        raise RemoteScorerError(
            "the served tokenizer merges a label with the preceding 'Answer:'; the label ids the "
            "model was trained to read do not follow the prompt. Serve the Qwen3 tokenizer.",
            endpoint=TOKENIZE_PATH,
        )
    return LabelIds(safe=safe, harmful=harmful)


def parse_scores(body: Any, n_items: int, prompt_tokens: int) -> list[float]:
    """P(HARMFUL) per item from a `/generative_scoring` response, in request order.

    `prompt_tokens` is how many tokens we sent in all: a different `usage.prompt_tokens` means
    the server cut the prompts itself (it truncates from the right, dropping `Answer:`), which
    would make every score meaningless, so it is an error rather than a number.
    """
    if not isinstance(body, dict):
        raise _malformed(SCORING_PATH, f"expected a JSON object, got {type(body).__name__}")
    data = body.get("data")
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise _malformed(SCORING_PATH, "'data' is missing or not a list of objects")
    if len(data) != n_items:
        raise _malformed(SCORING_PATH, f"{len(data)} scores for {n_items} prompts")
    scores: list[float | None] = [None] * n_items
    for row in data:
        index, score = row.get("index"), row.get("score")
        if not _is_int(index) or not 0 <= index < n_items or scores[index] is not None:
            raise _malformed(SCORING_PATH, f"bad or repeated item index {index!r}")
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            raise _malformed(SCORING_PATH, f"score of item {index} is not a number")
        if not math.isfinite(score) or not 0.0 <= score <= 1.0:
            raise _malformed(SCORING_PATH, f"score of item {index} is not a probability: {score!r}")
        scores[index] = float(score)
    usage = body.get("usage")
    if isinstance(usage, dict) and _is_int(usage.get("prompt_tokens")):
        if usage["prompt_tokens"] != prompt_tokens:
            raise RemoteScorerError(
                f"the server read {usage['prompt_tokens']} prompt tokens where {prompt_tokens} "
                "were sent: it cut the prompts itself, so the scores are not MemRM's. Raise "
                "vLLM's --max-model-len or lower max_length.",
                endpoint=SCORING_PATH,
            )
    return [s for s in scores if s is not None]


def error_detail(body: Any, prompts: Sequence[str] = ()) -> str:
    """A short, prompt-free description of a server error body (vLLM's ErrorResponse or other).

    Servers sometimes quote the request (validation errors do); a message that shares a
    `_QUOTE_WINDOW`-character stretch with any prompt is withheld rather than logged.
    """
    message: Any = None
    kind: Any = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            message, kind = err.get("message"), err.get("type")
        elif isinstance(body.get("detail"), str):
            message = body["detail"]
        elif isinstance(body.get("message"), str):
            message = body["message"]
    if not isinstance(message, str) or not message:
        return f" ({kind})" if isinstance(kind, str) else ""
    if _quotes_any(message, prompts):
        message = "[server message withheld: it quotes the prompt]"
    elif len(message) > _DETAIL_MAX_CHARS:
        message = message[:_DETAIL_MAX_CHARS] + "..."
    prefix = f"{kind}: " if isinstance(kind, str) and kind else ""
    return f" ({prefix}{message})"


def _quotes_any(message: str, prompts: Sequence[str]) -> bool:
    if not prompts:
        return False
    if len(message) < _QUOTE_WINDOW:
        return any(message in p for p in prompts)
    windows = {message[i : i + _QUOTE_WINDOW] for i in range(len(message) - _QUOTE_WINDOW + 1)}
    return any(w in p for w in windows for p in prompts)
