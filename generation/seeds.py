"""What a seed is: one JSON object per line; and the small seed sets shipped in the package, one per kind of recipe
input (``generation/data/<name>.jsonl``)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

DEFAULT_SET = "seed_tasks"


def builtin_sets() -> list[str]:
    folder = resources.files("generation").joinpath("data")
    return sorted(p.name.removesuffix(".jsonl") for p in folder.iterdir() if p.name.endswith(".jsonl"))


@cache
def builtin_seeds(name: str = DEFAULT_SET) -> tuple[dict, ...]:
    """Rows of the built-in set ``name``; each has a unique ``id``."""
    if name not in builtin_sets():
        raise ValueError(f"unknown built-in seed set {name!r}; valid choices: {builtin_sets()}")
    text = resources.files("generation").joinpath("data", f"{name}.jsonl").read_text(encoding="utf-8")
    return tuple(json.loads(line) for line in text.splitlines() if line.strip())


def builtin_seed_tasks() -> tuple[dict, ...]:
    return builtin_seeds(DEFAULT_SET)


def parse_seed(text: str) -> tuple[dict[str, Any] | None, str]:
    """The seed row a JSON line holds, or None and why it holds none (in words, for the ``errors/`` row)."""
    try:
        row = json.loads(text)
    except RecursionError:
        return None, "JSON nested deeper than the parser allows"
    except ValueError as exc:  # syntax errors, and integers longer than Python converts
        return None, f"not valid JSON ({exc})"
    if not isinstance(row, dict):
        kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(row), "number")
        return None, f"a JSON {kind}, not an object with fields"
    return row, ""
