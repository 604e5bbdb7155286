"""Answers that only echo the prompt: small models often repeat the instruction instead of answering it."""

from __future__ import annotations

from typing import Any

from filtering.base import Filter, Verdict
from filtering.exact_dedup import normalize


class EchoFilter(Filter):
    """Drops a sample whose ``answer`` field, normalised, equals the ``prompt`` field or is a part of it.

    Rows lacking either field (a recipe without an instruction column) are kept: there is nothing to compare.

    Args:
        prompt: the column holding what was asked.
        answer: the column holding the model's answer.
        min_answer_chars: answers shorter than this (normalised) are left to the length filter.
    """

    name = "echo"

    def __init__(self, prompt: str = "instruction", answer: str = "response", min_answer_chars: int = 1) -> None:
        super().__init__([prompt, answer])
        self.prompt, self.answer, self.min_answer_chars = prompt, answer, min_answer_chars

    def bind_fields(self, default_fields: Any) -> None:
        """The compared columns come from ``prompt``/``answer``, not from the recipe's text fields."""

    def keep(self, row: dict[str, Any]) -> bool | Verdict:
        asked, answered = row.get(self.prompt), row.get(self.answer)
        if not isinstance(asked, str) or not isinstance(answered, str):
            return True
        answered = normalize(answered)
        if len(answered) >= self.min_answer_chars and answered in normalize(asked):
            return False, f"echoes:{self.prompt}"
        return True
