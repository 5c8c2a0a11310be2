"""The MemRM prompt protocol, byte for byte (see memrm-protocol.md).

MemRM was trained on flat text in one exact shape; anything else gives meaningless numbers. So
this module does no normalisation at all: CR, tabs, trailing spaces and any Unicode pass through,
and every rule below mirrors the training renderer, including its corner cases.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from memguard.messages import _check_sequence, as_protocol_dict, to_message

__all__ = [
    "ACTION_MAX_CHARS",
    "COVERAGE_T",
    "JUDGMENT_TEMPLATE",
    "LABEL_HARMFUL",
    "LABEL_SAFE",
    "MAX_LENGTH",
    "RESPONSE_PREFIX",
    "ROLE_HEADERS",
    "SUMMARY_PREFIX",
    "coverage_band",
    "extract_command",
    "judgment_text",
    "looks_like_shell",
    "perturbation_tag",
    "render_action",
    "render_block",
    "render_body",
    "render_prompt",
    "render_turns",
    "split_judgment",
    "summary_message",
]

LABEL_SAFE = " Y"
"""The SAFE label MemRM scores after the prompt (the leading space is part of the token)."""
LABEL_HARMFUL = " N"
"""The HARMFUL label: P(HARMFUL) = softmax([z(" Y"), z(" N")])[1] at the position after the prompt."""
RESPONSE_PREFIX = "\n\nAnswer:"
SUMMARY_PREFIX = "[Summary] "
"""How training saw a summary: a user turn of this prefix plus the text (see `memguard.protocol.summary_message`)."""
ACTION_MAX_CHARS = 500
COVERAGE_T = 0.88  # the published operating point: covered iff P(SAFE) >= t or <= 1 - t
MAX_LENGTH = 32_768  # training cut over-long prompts from the left to this many tokens
ROLE_HEADERS: Mapping[str, str] = {
    "system": "[System]",
    "user": "[User]",
    "assistant": "[Assistant]",
    "tool": "[Tool]",
    "exit": "[Exit]",
}
JUDGMENT_TEMPLATE = (
    "Recorded action at step {step}:\n{recorded}\n\n"
    "Proposed action under perturbation '{perturbation}':\n{proposed}\n\n"
    "Is the proposed action safe (would not regress task resolution)? "
    "Answer Y if safe, N if harmful."
)

_SHELL_LEADERS = (
    "cd ", "cat ", "grep ", "find ", "python ", "python3 ", "pip ", "git ", "ls ", "ls\n",
    "echo ", "sed ", "awk ", "head ", "tail ", "mkdir ", "touch ", "rm ", "mv ", "cp ",
    "pytest ", "bash ", "sh ", "curl ", "wget ", "diff ", "patch ", "make ", "export ",
    "source ", "./", "/bin/", "/usr/",
)  # fmt: skip
_SHELL_OPERATORS = (" | ", " > ", " >> ", " && ", " 2>&1")
_FENCED_BLOCK = re.compile(r"```(?:bash|sh|shell)?\s*\n(.*?)```", re.DOTALL)
_COMMAND_TAG = re.compile(r"<command>(.*?)</command>", re.DOTALL)


# --------------------------------------------------------------------------- turns


def _header(role: Any) -> str:
    if isinstance(role, str) and role in ROLE_HEADERS:
        return ROLE_HEADERS[role]
    return "[" + str(role) + "]"


def _render_tool_call(call: Any) -> str:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping):
        return "tool()"
    name = function.get("name", "tool")
    arguments = function.get("arguments", "")
    decoded = arguments
    if isinstance(arguments, str):
        try:
            decoded = json.loads(arguments)
        except (json.JSONDecodeError, RecursionError):
            decoded = arguments
    if name == "bash" and isinstance(decoded, dict) and decoded.get("command"):
        return "$ " + str(decoded["command"])
    return f"{name}({decoded})"


def _iter_calls(tool_calls: Any) -> list[Any]:
    """Tool calls as training iterated them (``or []``); a non-iterable value gives none."""
    if not tool_calls:
        return []
    if isinstance(tool_calls, Mapping):
        return list(tool_calls.keys())
    try:
        return list(tool_calls)
    except TypeError:
        return []


def _render_part(item: Any) -> str:
    if isinstance(item, Mapping):
        text = item.get("text")
        if text:
            return str(text)
        try:
            return json.dumps(item, default=str)[:400]
        except (TypeError, ValueError, RecursionError):  # keys json cannot encode, cycles
            return str(item)[:400]
    return str(item)


def render_body(message: Any) -> str:
    """The text under a turn's header (protocol §3)."""
    msg = as_protocol_dict(message)
    role = msg.get("role", "user")
    content = msg.get("content")
    if isinstance(role, str) and role == "assistant":
        pieces: list[str] = []
        if isinstance(content, str) and content:
            pieces.append(content)
        pieces.extend(_render_tool_call(call) for call in _iter_calls(msg.get("tool_calls")))
        return "\n".join(p for p in pieces if p)
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_render_part(item) for item in content)
    return str(content)


def render_block(message: Any) -> str:
    """``header + "\\n" + body`` for one turn."""
    msg = as_protocol_dict(message)
    return _header(msg.get("role", "user")) + "\n" + render_body(msg)


def render_turns(view: Sequence[Any]) -> str:
    """The view's turns joined by blank lines (no judgment turn, no answer prefix)."""
    blocks = []
    for index, message in enumerate(_check_sequence(view)):  # a clear ValueError for a non-list
        if not isinstance(message, Mapping):
            message = to_message(message, index=index)  # names the element that is not a message
        blocks.append(render_block(message))
    return "\n\n".join(blocks)


# --------------------------------------------------------------------------- judgment


def _field(value: Any) -> str:
    return "" if value is None else str(value)


def judgment_text(*, step: int, recorded: Any, proposed: Any, perturbation: Any) -> str:
    """The final user turn (protocol §1); fields go in verbatim, None becomes ""."""
    return JUDGMENT_TEMPLATE.format(
        step=int(step),
        recorded=_field(recorded),
        proposed=_field(proposed),
        perturbation=_field(perturbation),
    )


def render_prompt(
    view: Sequence[Any], *, step: int, recorded: Any, proposed: Any, perturbation: Any
) -> str:
    """The full MemRM prompt, ending in ``"\\n\\nAnswer:"``, byte for byte as in training.

    No normalisation happens: CR, tabs, trailing spaces and any Unicode pass through, since
    MemRM gives meaningless numbers for any other shape.

    Args:
        view: The agent's context before the compaction (OpenAI-style dicts, `Message`s or
            LangChain messages).
        step: The agent's step, shown in the judgment turn.
        recorded: The agent's next action under the full context, usually from `render_action`
            (None renders as "").
        proposed: Its next action under the compacted context, rendered the same way.
        perturbation: The tag for the compaction, usually ``strategy_swap__<strategy>``.

    Returns:
        The prompt text to score.

    Raises:
        ValueError: `view` is not a sequence of messages, or an element is not a message.
    """
    judgment = {"role": "user", "content": judgment_text(
        step=step, recorded=recorded, proposed=proposed, perturbation=perturbation
    )}
    return render_turns([*_check_sequence(view), judgment]) + RESPONSE_PREFIX


def split_judgment(
    view: Sequence[Any], *, step: int, recorded: Any, perturbation: Any
) -> tuple[str, str]:
    """The prompt text up to (and excluding) the proposed action, and what follows it.

    ``prefix + proposed + suffix == render_prompt(...)`` for any proposed action: every candidate
    of one compaction event shares `prefix`, which the fast scorer prefills once.
    """
    marker = "\x00PROPOSED\x00"
    text = render_prompt(
        view, step=step, recorded=recorded, proposed=marker, perturbation=perturbation
    )
    cut = text.rindex(marker)
    return text[:cut], text[cut + len(marker):]


# --------------------------------------------------------------------------- actions


def looks_like_shell(text: str) -> bool:
    """The training heuristic for "this is a shell command, not prose"."""
    stripped = text.strip()
    if not stripped or stripped.startswith("#"):
        return False
    if stripped.startswith(_SHELL_LEADERS):
        return True
    return any(op in stripped for op in _SHELL_OPERATORS)


def extract_command(text: str) -> str:
    """The command in an agent's text, or "" when there is none (protocol §5, steps a-e).

    Mirrors training exactly: only the *last* fenced block is considered (if it is not
    shell-like the search moves on), and a fenced or tagged command keeps all its lines.
    """
    if not text:
        return ""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError):
        data = None
    if isinstance(data, dict) and "command" in data:
        return str(data["command"]).strip()
    blocks = _FENCED_BLOCK.findall(text)
    if blocks:
        command: str = blocks[-1].strip()
        if looks_like_shell(command):
            return command
    tagged = _COMMAND_TAG.search(text)
    if tagged:
        command = tagged.group(1).strip()
        if looks_like_shell(command):
            return command
    for line in text.split("\n"):
        line = line.strip()
        if looks_like_shell(line):
            return line
    return ""


def _bash_tool_command(message: Mapping[str, Any]) -> str | None:
    for call in _iter_calls(message.get("tool_calls")):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or function.get("name") != "bash":
            continue
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            continue
        try:
            decoded = json.loads(arguments)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(decoded, dict) and decoded.get("command"):
            return str(decoded["command"])
    return None


def render_action(message: Any) -> str:
    """How an agent response becomes the action text in the judgment turn (protocol §5).

    A command when one can be found (the training distribution), else the assistant body of
    §3; then cut to 500 characters and stripped. Identical behaviour gives identical strings.

    Args:
        message: The agent's response: a string, an OpenAI-style dict, a `Message` or a
            LangChain message (None renders as "").

    Returns:
        The action text, at most 500 characters.
    """
    if message is None:
        return ""
    if isinstance(message, str):
        message = {"role": "assistant", "content": message}
    msg = as_protocol_dict(message)
    source = _bash_tool_command(msg)
    if source is None:
        content = msg.get("content")
        source = str(content) if content else ""
    command = extract_command(source)
    if command:
        text = command
    else:
        text = render_body({**msg, "role": "assistant"})
    return text[:ACTION_MAX_CHARS].strip()


# --------------------------------------------------------------------------- helpers


def perturbation_tag(strategy: str) -> str:
    """The perturbation tag memguard shows the model for a compaction strategy (§6)."""
    return f"strategy_swap__{strategy}"


def summary_message(text: str) -> dict[str, str]:
    """A summary the way training saw summaries: a user turn ``"[Summary] " + text``."""
    return {"role": "user", "content": SUMMARY_PREFIX + text}


def coverage_band(p_harmful: float, t: float = COVERAGE_T) -> str:
    """The published coverage rule (§7): "safe" iff P(SAFE) ≥ t, "harmful" iff ≤ 1 − t, else "uncertain"."""
    p_safe = 1.0 - p_harmful
    if p_safe >= t:
        return "safe"
    if p_safe <= 1.0 - t:
        return "harmful"
    return "uncertain"
