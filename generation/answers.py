"""Checkable answers: a number, a choice letter or a JSON value, read out of model text and compared by value.

A reference answer is checkable when it *is* one of these (``42``, ``$3.50``, ``(B)``, ``{"a": 1}``) or marks one
(``#### 42``, ``\\boxed{42}``, ``The answer is B``). A candidate is read the way rejection-sampling pipelines grade
solutions: the last value of the reference's kind in its text. Free text has no checkable answer (None).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?"
_NUMBER_RE = re.compile(rf"(?<![\w.]){_NUMBER}(?![\w])")
# A reference that is only a number, give or take a currency sign, a unit word or a closing period.
_BARE_NUMBER = re.compile(rf"^\s*[$€£]?\s*({_NUMBER})\s*(?:%|[a-zA-Z]{{1,12}})?\s*\.?\s*$")
_MARKED_NUMBER = re.compile(rf"(?:####\s*|\\boxed\{{\s*|answer(?: is|:)\s*[$€£]?\s*)({_NUMBER})", re.IGNORECASE)
_BARE_CHOICE = re.compile(r"^\s*\(?([A-Ea-e])\)?[.):]?\s*$")
_MARKED_CHOICE = re.compile(r"(?:answer|option|choice)(?: is|:)?\s*\(?([A-E])\)?(?![\w])", re.IGNORECASE)
_CHOICE_RE = re.compile(r"(?:^|[\s(])\(?([A-E])\)?(?=[\s.,;:)!?]|$)")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"})


def normalised(text: str) -> str:
    """Case, typographic quotes and dashes, and runs of spaces folded; surrounding quotes and punctuation dropped."""
    return " ".join(text.translate(_QUOTES).lower().split()).strip(" \"'.,;:!?")


@dataclass(frozen=True)
class Answer:
    kind: str  # number, choice or json
    value: Any

    def shown(self) -> str:
        return json.dumps(self.value, sort_keys=True) if self.kind == "json" else str(self.value)


def _number(text: str) -> Fraction | None:
    try:
        return Fraction(text.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def reference_answer(text: str) -> Answer | None:
    """The checkable answer ``text`` states, or None for free text."""
    stripped = text.strip()
    if stripped[:1] in "[{":
        try:
            return Answer("json", json.loads(stripped))
        except ValueError:
            pass
    for pattern, kind in ((_BARE_NUMBER, "number"), (_BARE_CHOICE, "choice")):
        match = pattern.match(stripped)
        if match:
            return _answer(kind, match.group(1))
    marked = [(m.start(), "number", m.group(1)) for m in _MARKED_NUMBER.finditer(stripped)]
    marked += [(m.start(), "choice", m.group(1)) for m in _MARKED_CHOICE.finditer(stripped)]
    if marked:
        _, kind, value = max(marked)
        return _answer(kind, value)
    return None


def _answer(kind: str, raw: str) -> Answer | None:
    if kind == "choice":
        return Answer("choice", raw.upper())
    value = _number(raw)
    return Answer("number", value) if value is not None else None


def candidate_answer(text: str, kind: str) -> Answer | None:
    """The last value of ``kind`` in ``text`` (a marked one wins over a merely last one), or None."""
    if kind == "json":
        return _last_json(text)
    marked = _MARKED_NUMBER if kind == "number" else _MARKED_CHOICE
    found = list(marked.finditer(text)) or list((_NUMBER_RE if kind == "number" else _CHOICE_RE).finditer(text))
    for match in reversed(found):
        answer = _answer(kind, match.group(1) if match.groups() else match.group(0))
        if answer is not None:
            return answer
    return None


def _last_json(text: str) -> Answer | None:
    decoder, last, start = json.JSONDecoder(), None, 0
    while start < len(text):
        if text[start] in "[{":
            try:
                value, end = decoder.raw_decode(text, start)
            except ValueError:
                pass
            else:  # a whole value: the ones nested in it are not candidates
                last, start = Answer("json", value), end
                continue
        start += 1
    return last


def same_value(reference: Answer, candidate: Answer | None) -> bool:
    """Equal by normalised value: numbers exactly as fractions (0.5 == 1/2 == 0.50), choices by letter, JSON by
    content (key order aside)."""
    if candidate is None or candidate.kind != reference.kind:
        return False
    if reference.kind == "json":
        return json.dumps(reference.value, sort_keys=True) == json.dumps(candidate.value, sort_keys=True)
    return reference.value == candidate.value
