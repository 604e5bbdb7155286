"""Keep samples whose numeric column lies within bounds (a judge's ``score``, a pseudo-label's ``confidence``)."""

from __future__ import annotations

from typing import Any

from filtering.base import Filter, Verdict


class ThresholdFilter(Filter):
    """Args:
    column: the numeric column to test.
    min: lowest value kept (inclusive); None for no lower bound.
    max: highest value kept (inclusive); None for no upper bound.
    keep_missing: keep rows where the column is null or absent (default: drop them).
    """

    name = "threshold"

    def __init__(
        self, column: str, min: float | None = None, max: float | None = None, keep_missing: bool = False
    ) -> None:
        super().__init__([column])
        if min is None and max is None:
            raise ValueError(f"threshold on {column!r} needs min or max")
        self.column, self.low, self.high, self.keep_missing = column, min, max, keep_missing

    def bind_fields(self, default_fields: Any) -> None:
        """The tested column is ``column``, not the recipe's text fields."""

    def keep(self, row: dict[str, Any]) -> bool | Verdict:
        value = row.get(self.column)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return self.keep_missing or (False, f"{self.column}_missing")
        if self.low is not None and value < self.low:
            return False, f"{self.column}_below_{self.low}"
        if self.high is not None and value > self.high:
            return False, f"{self.column}_above_{self.high}"
        return True
