"""What a recipe is: an async program run once per seed against the engine client, emitting samples.

Helpers here keep each recipe short: ``render`` fills prompt templates (seed text is inserted as a value and never
scanned again), ``parse_json`` reads JSON out of model text, and ``Sample.ask`` makes a call, books its tokens and
turns an engine error into ``StepFailed``, which ``attempt`` converts into a failed sample.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import pyarrow as pa

from generation.engines import Completion, EngineClient
from generation.jsontext import parse_json

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def render(template: str, **values: Any) -> str:
    """``template`` with each ``{name}`` replaced by ``values[name]`` in one pass; a missing name is an error."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"prompt template names {{{name}}} but only {sorted(values)} are available")
        return str(values[name])

    return _PLACEHOLDER.sub(value, template)


def placeholders(template: str) -> list[str]:
    return list(dict.fromkeys(_PLACEHOLDER.findall(template)))


def string_list(key: str, max_items: int, max_length: int = 300) -> dict:
    """Schema of ``{key: [up to max_items strings]}``: bounds keep a small model from rambling until max_tokens."""
    item = {"type": "string", "minLength": 1, "maxLength": max_length}
    array = {"type": "array", "items": item, "minItems": 1, "maxItems": max(1, max_items)}
    return {"type": "object", "properties": {key: array}, "required": [key]}


def user(content: str, system: str = "") -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]


def configured(engine: EngineClient, name: str) -> bool:
    """Whether the run gives role ``name`` an engine of its own (a plain client, a unit test's, sets no role)."""
    check = getattr(engine, "configured", None)
    return check is not None and check(name)


def role(engine: EngineClient, *names: str) -> EngineClient:
    """The first of ``names`` the run gives an engine of its own, else the last one (which is the generator when the
    run does not set it either). A plain client (a unit test's engine) plays every role."""
    find = getattr(engine, "role", None)
    if find is None:
        return engine
    return find(next((n for n in names if configured(engine, n)), names[-1]))


USAGE_KEYS = (
    "calls",
    "prompt_tokens",
    "completion_tokens",
    "errors",
    "retries",
    "seconds",
    # Of those calls, the ones the completion cache answered, and their tokens (what the run did not pay for).
    "cache_hits",
    "cached_prompt_tokens",
    "cached_completion_tokens",
)


class StepFailed(Exception):
    """A step of a recipe could not go on: ``stage`` (engine, parse, ...) and why."""

    def __init__(self, stage: str, error: str) -> None:
        super().__init__(error)
        self.stage, self.error = stage, error


@dataclass
class Sample:
    """One output of a recipe for one seed: its own fields, tokens spent on it, and how it ended.

    A sample ends ok, failed (``error`` set: it goes to errors/) or rejected by the recipe's own check
    (``reject_reason`` set: it goes to rejected/ with ``rejected_by`` = the recipe's name).
    """

    fields: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    stage: str = "recipe"
    reject_reason: str | None = None
    # Role → calls, tokens, errors, retries and seconds of the calls booked on this sample (the row's role_usage).
    usage: dict[str, dict[str, float]] = field(default_factory=dict)

    def spend(self, completion: Completion) -> Completion:
        """Add a call's tokens to this sample and hand the completion back, so calls read as one line."""
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        booked = self.usage.setdefault(completion.role or "generator", dict.fromkeys(USAGE_KEYS, 0))
        for key, value in (
            ("calls", 1),
            ("prompt_tokens", completion.prompt_tokens),
            ("completion_tokens", completion.completion_tokens),
            ("errors", int(not completion.ok)),
            ("retries", completion.retries),
            ("seconds", completion.seconds),
            ("cache_hits", int(completion.cached)),
            ("cached_prompt_tokens", completion.prompt_tokens if completion.cached else 0),
            ("cached_completion_tokens", completion.completion_tokens if completion.cached else 0),
        ):
            booked[key] += value
        return completion

    def book(self, other: Sample) -> None:
        """Add another sample's spending (a shared step's) to this one."""
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        for name, figures in other.usage.items():
            booked = self.usage.setdefault(name, dict.fromkeys(USAGE_KEYS, 0))
            for key in USAGE_KEYS:
                booked[key] += figures[key]

    async def ask(self, engine: EngineClient, messages: list[dict[str, str]], **kwargs: Any) -> Completion:
        """One chat call whose tokens count for this sample; an engine error raises ``StepFailed``."""
        done = self.spend(await engine.chat(messages, **kwargs))
        if not done.ok:
            raise StepFailed("engine", done.error or "engine call failed")
        return done

    async def ask_json(self, engine: EngineClient, messages: list[dict[str, str]], schema: dict, **kwargs: Any) -> Any:
        """A schema-constrained call, parsed; unusable output raises ``StepFailed("parse", ...)``."""
        done = await self.ask(engine, messages, json_schema=schema, **kwargs)
        value = parse_json(done.text)
        expected = {"object": dict, "array": list}.get(schema.get("type"))
        if value is None or (expected is not None and not isinstance(value, expected)):
            # Usually output cut off by max_tokens: the JSON never closed, or only an inner part of it parsed.
            raise StepFailed("parse", f"no JSON {schema.get('type', 'value')} in model output: {done.text[:200]!r}")
        return value

    async def ask_scores(
        self, engine: EngineClient, messages: list[dict[str, str]], choices: list[str]
    ) -> dict[str, float]:
        """choice → probability from ``engine.score``, booked on this sample; an engine error raises ``StepFailed``
        (``stage`` engine: callers that can do without probabilities catch it and fall back)."""
        done = self.spend(await engine.score(messages, choices))
        if not done.ok or done.scores is None:
            raise StepFailed("engine", done.error or "the engine returned no scores")
        return done.scores

    def fan_out(self, fields: list[dict[str, Any]]) -> list[Sample]:
        """One sample per ``fields``, each starting from this sample's fields; the tokens this shared step spent
        are booked once, on the first, so per-row sums still add up to the run's total."""
        samples = [Sample({**self.fields, **f}) for f in fields]
        if samples:
            samples[0].book(self)
        return samples

    def fail(self, stage: str, error: str) -> Sample:
        self.stage, self.error = stage, error
        return self

    def reject(self, reason: str) -> Sample:
        self.reject_reason = reason
        return self


async def attempt(sample: Sample, step: Callable[[Sample], Awaitable[Sample | None]]) -> Sample:
    """Run ``step`` on ``sample``; a ``StepFailed`` becomes a failed sample instead of an exception."""
    try:
        return await step(sample) or sample
    except StepFailed as failed:
        return sample.fail(failed.stage, failed.error)


class Recipe(Protocol):
    """A recipe declares its output columns and required seed fields, and runs per seed.

    ``columns`` become Parquet columns of every output row; ``text_fields`` are what filters read by default;
    ``required_fields`` are checked on each seed before any engine call (a seed missing one goes to errors/).
    An optional ``balance_fields`` names label/attribute columns whose value counts run.json and the report show.
    Optional hooks: ``bind_state(state)`` (run-wide state shared by every engine actor), ``bind_corpus(rows)`` (a
    sample of the run's own source, for a once-per-run phase over the corpus) and ``async restore_state(rows)`` (a
    resumed run's committed rows, oldest first, to rebuild run-wide state from). An optional ``export_map`` says
    which column plays which part (prompt, input, response, messages, chosen, rejected) in a training export.
    """

    name: ClassVar[str]
    columns: dict[str, pa.DataType]
    text_fields: tuple[str, ...]
    required_fields: tuple[str, ...]

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]: ...
