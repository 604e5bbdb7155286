"""What a recipe is: an async program run once per seed against the engine client, emitting samples."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import pyarrow as pa

from generation.engine import Completion, EngineClient


@dataclass
class Sample:
    """One output of a recipe for one seed: its own fields, tokens spent on it, or the error that ended it."""

    fields: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    stage: str = "recipe"

    def spend(self, completion: Completion) -> Completion:
        """Add a call's tokens to this sample and hand the completion back, so calls read as one line."""
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        return completion

    def fail(self, stage: str, error: str) -> Sample:
        self.stage, self.error = stage, error
        return self


class Recipe(Protocol):
    """A recipe declares its output columns and required seed fields, and runs per seed.

    ``columns`` become Parquet columns of every output row; ``text_fields`` are what filters read by default;
    ``required_fields`` are checked on each seed before any engine call (a seed missing one goes to errors/).
    """

    name: ClassVar[str]
    columns: ClassVar[dict[str, pa.DataType]]
    text_fields: ClassVar[tuple[str, ...]]
    required_fields: ClassVar[tuple[str, ...]]

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]: ...
