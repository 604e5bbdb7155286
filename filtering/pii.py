"""PII redaction: a mapper that rewrites emails, phone numbers and IP addresses in the text fields.

Never drops a sample. Each row gets ``pii_redactions`` (how many spans were replaced); the run totals per kind are
added up in run.json. Patterns follow common data-cleaning practice (e.g. BigCode's PII pipeline for emails and
IPs); phone numbers need 7+ digits so dates and small numbers stay.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import pyarrow as pa

from filtering.base import Filter, is_messages

PATTERNS = {
    "email": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b"),
    "ip": re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
    # 7-15 digits with separators; ISO dates (2024-05-01) look alike and are not phone numbers.
    "phone": re.compile(r"(?<![\w.])(?!\d{4}-\d{2}-\d{2}\b)\+?\(?\d(?:[\s().-]{0,2}\d){6,14}(?![\w.])"),
}


def _possible_kinds(text: str, kinds: list[str]) -> list[str]:
    """The kinds whose pattern could match: an email needs "@", an IP 4 digits, a phone number 7. Counting characters
    is C-fast, so most texts skip the (slow) regex scans altogether."""
    digits = sum(map(text.count, "0123456789"))
    needs = {"email": "@" in text, "ip": digits >= 4 and text.count(".") >= 3, "phone": digits >= 7}
    return [kind for kind in kinds if needs[kind]]


class PIIRedactor(Filter):
    """Replaces PII spans with ``[EMAIL]``, ``[IP]``, ``[PHONE]`` (IPs before phones: an IP is all digits and dots).

    Args:
        kinds: which of email, ip, phone to redact.
        fields: text columns to rewrite; defaults to the recipe's text fields.
    """

    name = "pii"
    columns: ClassVar[dict[str, pa.DataType]] = {"pii_redactions": pa.int32()}

    def __init__(self, kinds: Sequence[str] = ("email", "ip", "phone"), fields: Sequence[str] | None = None) -> None:
        super().__init__(fields)
        unknown = sorted(set(kinds) - set(PATTERNS))
        if unknown:
            raise ValueError(f"unknown PII kind(s) {unknown}; valid choices: {sorted(PATTERNS)}")
        self.kinds = [k for k in PATTERNS if k in kinds]
        self.totals: Counter = Counter()

    def redact(self, text: str) -> tuple[str, int]:
        count = 0
        for kind in _possible_kinds(text, self.kinds):
            text, n = PATTERNS[kind].subn(f"[{kind.upper()}]", text)
            count += n
            self.totals[kind] += n
        return text, count

    def rewrite(self, row: dict[str, Any]) -> None:
        count = 0
        for field in self.fields or ():
            value = row.get(field)
            if isinstance(value, str) and value:
                row[field], n = self.redact(value)
                count += n
            elif is_messages(value):  # a conversation: each turn's content, roles kept
                turns = []
                for message in value:
                    content, n = self.redact(str(message.get("content") or ""))
                    turns.append({**message, "content": content})
                    count += n
                row[field] = turns
        row["pii_redactions"] = (row.get("pii_redactions") or 0) + count

    def drain_counters(self) -> dict[str, int]:
        """Redactions per kind since the last call (the filter stage adds them up for run.json)."""
        counts, self.totals = dict(self.totals), Counter()
        return counts

    def keep(self, row: dict[str, Any]) -> bool:
        self.rewrite(row)
        return True
