"""The filter contract: a filter decides keep/drop per sample; the framework batches, counts and records rejects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Verdict = tuple[bool, str | None]


class Filter:
    """Base class for every filter.

    A subclass sets ``name`` and implements ``keep(row)`` returning ``True``/``False`` or ``(False, "reason")``.
    Filters that need the whole batch at once (global dedup asks its shard actors once per batch) override
    ``keep_batch`` instead. ``fields`` are the text columns a filter reads; by default the recipe's text columns.

    Args:
        fields: columns to read; ``None`` means the recipe's text fields, set by the filter stage.
    """

    name: str = "filter"

    def __init__(self, fields: Sequence[str] | None = None) -> None:
        self.fields = list(fields) if fields is not None else None

    def bind_fields(self, default_fields: Sequence[str]) -> None:
        if self.fields is None:
            self.fields = list(default_fields)

    def texts(self, row: dict[str, Any]) -> list[tuple[str, str]]:
        """(field, text) pairs this filter reads from ``row``; missing or null fields read as empty text, a list of
        chat messages as their contents (``as_text``)."""
        return [(field, as_text(row.get(field))) for field in self.fields or ()]

    def text(self, row: dict[str, Any], sep: str = "\n") -> str:
        """The fields this filter reads, joined into one text."""
        return sep.join(text for _, text in self.texts(row))

    def keep(self, row: dict[str, Any]) -> bool | Verdict:
        raise NotImplementedError(f"{type(self).__name__} must implement keep(row) or keep_batch(rows)")

    def keep_batch(self, rows: list[dict[str, Any]]) -> list[Verdict]:
        return [as_verdict(self.keep(row), self.name) for row in rows]


def is_messages(value: Any) -> bool:
    """Whether ``value`` is a conversation: a list of ``{role, content}`` mappings (a ``list<struct>`` column)."""
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "content" in m for m in value)


def as_text(value: Any) -> str:
    """A column's value as the text filters and quality figures read: a string as it is, a conversation as its
    messages' contents joined by newlines (so a refusal in any turn is seen), a list of strings joined by newlines,
    null as empty text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if is_messages(value):
        return "\n".join(str(m.get("content") or "") for m in value)
    if isinstance(value, list):
        return "\n".join(as_text(item) for item in value)
    return str(value)


def as_verdict(result: bool | Verdict, default_reason: str) -> Verdict:
    if isinstance(result, tuple):
        keep, reason = result
        return bool(keep), (None if keep else reason or default_reason)
    return bool(result), (None if result else default_reason)
