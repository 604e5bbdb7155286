"""Refusals and model self-reference ("As an AI language model ...") in generated text."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from filtering.base import Filter, Verdict

DEFAULT_PHRASES = (
    "as an ai",
    "as a language model",
    "i'm an ai",
    "i am an ai",
    "i'm sorry, but i can",
    "i am sorry, but i can",
    "i cannot fulfill",
    "i can't fulfill",
    "i cannot assist",
    "i can't assist",
    "i cannot help with",
    "i can't help with",
    "i'm not able to provide",
    "i am not able to provide",
    "my knowledge cutoff",
    "openai",
    "developed by hugging face",
)


class RefusalFilter(Filter):
    """Drops samples that contain a refusal or self-reference phrase (case-insensitive, whitespace-normalised).

    Self-Instruct (Wang et al., 2023) drops generations that mention the model or refuse; the phrase list follows
    common instruction-tuning cleaning lists and can be replaced or extended from config.

    Args:
        phrases: phrases that drop a sample; replaces the built-in list.
        extra_phrases: phrases added to the built-in list.
        fields: text columns to check; defaults to the recipe's text fields.
    """

    name = "refusal"

    def __init__(
        self,
        phrases: Sequence[str] | None = None,
        extra_phrases: Sequence[str] = (),
        fields: Sequence[str] | None = None,
    ) -> None:
        super().__init__(fields)
        chosen = [*(DEFAULT_PHRASES if phrases is None else phrases), *extra_phrases]
        self.phrases = [" ".join(p.lower().split()) for p in chosen if p.strip()]
        # One alternation scans each text once instead of once per phrase.
        self._pattern = re.compile("|".join(re.escape(p) for p in self.phrases)) if self.phrases else None

    def keep(self, row: dict[str, Any]) -> bool | Verdict:
        if self._pattern is None:
            return True
        for _, text in self.texts(row):
            match = self._pattern.search(" ".join(text.lower().split()))
            if match:
                return False, f"phrase:{match.group(0)}"
        return True
