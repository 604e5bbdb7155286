"""JSON out of model text: models wrap JSON in prose or code fences, or stop before it closes."""

from __future__ import annotations

import json
from typing import Any


def parse_json(text: str) -> Any | None:
    """The first JSON object or array in ``text`` (models wrap JSON in prose or code fences); None if there is none."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    if text[:1] in "[{":  # it claims to be JSON and is not whole (cut off): an inner fragment is no answer
        return None
    for start, char in enumerate(text):
        if char in "[{":
            try:
                return decoder.raw_decode(text, start)[0]
            except ValueError:
                continue
    return None
