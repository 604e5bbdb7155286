"""Language ID with py3langid (Lui & Baldwin, 2012, langid.py), whose model ships inside the package: nothing is
downloaded at run time. Keeps samples whose detected language is allowed with enough confidence."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any, ClassVar

import pyarrow as pa

from filtering.base import Filter, Verdict


class LanguageFilter(Filter):
    """Args:
    languages: ISO 639-1 codes to keep (e.g. [en]).
    min_confidence: lowest normalised probability of the detected language.
    fields: text columns (joined); defaults to the recipe's text fields.
    """

    name = "language"
    columns: ClassVar[dict[str, pa.DataType]] = {"language": pa.string(), "language_score": pa.float64()}

    def __init__(
        self, languages: Sequence[str] = ("en",), min_confidence: float = 0.65, fields: Sequence[str] | None = None
    ) -> None:
        super().__init__(fields)
        if not languages:
            raise ValueError("language filter needs at least one language code")
        self.languages, self.min_confidence = set(languages), min_confidence

    @cached_property
    def identifier(self) -> Any:
        # Loaded on first use: importing the model costs about a second, which config validation need not pay.
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def keep(self, row: dict[str, Any]) -> bool | Verdict:
        text = self.text(row).strip()
        if not text:
            return False, "no_text"
        language, score = self.identifier.classify(text)
        row["language"], row["language_score"] = language, round(float(score), 4)
        if language not in self.languages:
            return False, f"language_{language}"
        if score < self.min_confidence:
            return False, f"low_confidence_{language}"
        return True
