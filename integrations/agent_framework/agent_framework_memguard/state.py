"""The message list as it was, put back in place: same list object, same message objects, same state.

Agent Framework strategies compact in place: they flag messages excluded in
`message.additional_properties` (nested annotation dicts included), insert summary messages into
the list, and may touch content items (a consumed trigger call is marked on its `Content`). The
framework then matches messages by identity (the tool loop's list, the session history and the
middleware's copy share the objects), so undoing a compaction means restoring those very objects:
a list of copies would be a defect. `ListState.take` records the list and, for each message and
content item, its attributes and the contents of its dicts and lists (never copying a leaf value,
so it cannot fail on an object that refuses to be copied); `restore` puts all of it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent_framework import Content
from agent_framework import Message as AFMessage

__all__ = ["ListState", "Scratch", "structural_copy"]


def structural_copy(value: Any) -> Any:
    """A copy of `value`'s dicts and lists, all the way down; every other object is shared.

    Args:
        value: Typically an `additional_properties` dict.

    Returns:
        New dicts and lists holding the same leaf objects (no leaf is copied, so this never fails).
    """
    return _copy(value, {})


def _copy(value: Any, memo: dict[int, Any]) -> Any:
    if id(value) in memo:
        return memo[id(value)]
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        memo[id(value)] = out
        out.update((key, _copy(item, memo)) for key, item in value.items())
        return out
    if isinstance(value, list):
        items: list[Any] = []
        memo[id(value)] = items
        items.extend(_copy(item, memo) for item in value)
        return items
    return value


@dataclass
class _Saved:
    """A dict or list object and what it held (children saved the same way)."""

    obj: Any
    items: list[tuple[Any, Any]] = field(default_factory=list)


def _save(value: Any, memo: dict[int, _Saved]) -> Any:
    if isinstance(value, (dict, list)):
        known = memo.get(id(value))
        if known is not None:
            return known
        saved = _Saved(value)
        memo[id(value)] = saved
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        saved.items = [(key, _save(item, memo)) for key, item in pairs]
        return saved
    return value


def _put_back(value: Any, done: set[int]) -> Any:
    if not isinstance(value, _Saved):
        return value
    obj = value.obj
    if id(obj) not in done:
        done.add(id(obj))
        restored = [(key, _put_back(item, done)) for key, item in value.items]
        if isinstance(obj, dict):
            obj.clear()
            obj.update(restored)
        else:
            obj[:] = [item for _, item in restored]
    return obj


@dataclass
class _ObjectState:
    """One message's or content item's attributes, its dict and list attributes saved by content."""

    obj: Any
    attributes: dict[str, Any]
    containers: dict[str, _Saved]

    @classmethod
    def take(cls, obj: Any, memo: dict[int, _Saved]) -> _ObjectState:
        attributes = dict(vars(obj))
        containers = {name: _save(value, memo) for name, value in attributes.items() if isinstance(value, (dict, list))}
        return cls(obj, attributes, containers)

    def copy(self, memo: dict[int, Any]) -> Any:
        """A new object of the same type holding the recorded state (containers rebuilt, leaves shared)."""
        new = object.__new__(type(self.obj))
        state = vars(new)
        state.update(self.attributes)
        state.update({name: _materialize(saved, memo) for name, saved in self.containers.items()})
        return new

    def restore(self, done: set[int]) -> None:
        current = vars(self.obj)
        for name in [name for name in current if name not in self.attributes]:
            delattr(self.obj, name)
        for saved in self.containers.values():
            _put_back(saved, done)
        for name, value in self.attributes.items():
            if current.get(name, _MISSING) is not value:
                setattr(self.obj, name, value)


_MISSING = object()


def _materialize(value: Any, memo: dict[int, Any]) -> Any:
    if not isinstance(value, _Saved):
        return value
    if id(value) in memo:
        return memo[id(value)]
    if isinstance(value.obj, dict):
        out: Any = {}
        memo[id(value)] = out
        out.update((key, _materialize(item, memo)) for key, item in value.items)
    else:
        out = []
        memo[id(value)] = out
        out.extend(_materialize(item, memo) for _, item in value.items)
    return out


@dataclass
class Scratch:
    """Copies of a recorded list, to run a compaction on without touching the agent's messages."""

    messages: list[AFMessage]
    """The copies, in the recorded order, each in its recorded state."""
    original_of: dict[int, Any]
    """`id(copy)` -> the agent's message (or content item) it copies."""

    def original(self, message: AFMessage) -> AFMessage:
        """The agent's message a copy stands for.

        Args:
            message: A message of `messages`.

        Returns:
            The agent's message it copies; a message the compaction wrote stands for itself.
        """
        found: AFMessage = self.original_of.get(id(message), message)
        return found

    def transplant(self, target: list[AFMessage]) -> None:
        """Make `target` what the scratch became: the agent's objects, carrying the copies' new state.

        Messages the compaction inserted into the scratch are inserted into `target` as they are.

        Args:
            target: The agent's list (the one the copies were recorded from), changed in place.
        """
        target[:] = [self._adopt(message) for message in self.messages]

    def _adopt(self, copy: Any) -> Any:
        original = self.original_of.get(id(copy))
        if original is None:
            return copy
        state = dict(vars(copy))
        if isinstance(copy, AFMessage):
            state["contents"] = [self._adopt(content) for content in copy.contents]
        for name in [name for name in vars(original) if name not in state]:
            delattr(original, name)
        for name, value in state.items():
            setattr(original, name, value)
        return original


@dataclass
class ListState:
    """A message list and the state of every message and content item in it, to put back in place.

    Agent Framework strategies compact in place and the framework matches messages by identity,
    so undoing a compaction means restoring those very objects: a list of copies would be a
    defect. Make one with `take`.
    """

    messages: list[AFMessage]
    """The list object recorded (restored in place)."""
    order: list[AFMessage]
    """Its messages, in the recorded order."""
    objects: list[_ObjectState]
    """The recorded state of each message and content item."""

    @classmethod
    def take(cls, messages: list[AFMessage]) -> ListState:
        """Record `messages` (the list object, its order, and each message's and content's state).

        Args:
            messages: The list a compaction is about to change in place.

        Returns:
            The record; `restore` puts everything back.
        """
        memo: dict[int, _Saved] = {}
        objects: list[_ObjectState] = []
        for message in messages:
            objects.append(_ObjectState.take(message, memo))
            objects.extend(_ObjectState.take(c, memo) for c in message.contents if isinstance(c, Content))
        return cls(messages, list(messages), objects)

    def copies(self) -> Scratch:
        """Copies of the recorded messages and content items, as they were when recorded.

        Returns:
            A `Scratch` holding the copies (containers rebuilt, leaf values shared).
        """
        memo: dict[int, Any] = {}
        original_of: dict[int, Any] = {}
        copy_of: dict[int, Any] = {}
        for state in self.objects:
            duplicate = state.copy(memo)
            copy_of[id(state.obj)] = duplicate
            original_of[id(duplicate)] = state.obj
        for state in self.objects:
            duplicate = copy_of[id(state.obj)]
            if isinstance(duplicate, AFMessage):
                duplicate.contents = [copy_of.get(id(content), content) for content in duplicate.contents]
        return Scratch([copy_of[id(message)] for message in self.order], original_of)

    def restore(self) -> None:
        """Put the list back: the same message objects in the same order, each as it was.

        Messages a compaction inserted leave the list; every attribute, flag and annotation of
        the recorded messages and their content items is restored, in the dicts and lists they
        had (a nested annotation dict is the same object afterwards, with its old contents).
        """
        done: set[int] = set()
        for state in self.objects:
            state.restore(done)
        self.messages[:] = self.order
