"""The built-in seed tasks shipped in the package (instruction / input / output rows with an ``id``)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

BUILTIN_SEEDS = "seed_tasks.jsonl"


@cache
def builtin_seed_tasks() -> tuple[dict, ...]:
    text = resources.files("generation").joinpath("data", BUILTIN_SEEDS).read_text(encoding="utf-8")
    return tuple(json.loads(line) for line in text.splitlines() if line.strip())
