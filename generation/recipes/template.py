"""A recipe written in yaml only: a messages template, sampling and ``n``; each completion is one sample.

With ``json_schema`` the call is constrained to that schema and each top-level property becomes a column
(strings, integers, numbers and booleans as such; arrays and objects as JSON text).
"""

from __future__ import annotations

import json
import random
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient, check_sampling
from generation.recipes.base import Sample, StepFailed, attempt, parse_json, placeholders, render

_ARROW = {"string": pa.string(), "integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}


class Template:
    """Args:
    messages: chat messages (``role``, ``content``) whose ``{field}`` placeholders name seed fields.
    n: completions per seed; each becomes a sample.
    sampling: sampling for the call (merged over the model's defaults; null values keep the model's).
    output: column holding the completion text (free-text mode).
    json_schema: a JSON schema (type object); its properties become the output columns.
    """

    name: ClassVar[str] = "template"

    def __init__(
        self,
        messages: list[dict[str, str]],
        n: int = 1,
        sampling: dict | None = None,
        output: str = "response",
        json_schema: dict | None = None,
    ) -> None:
        if not messages or any(set(m) != {"role", "content"} for m in messages):
            raise ValueError("recipe.messages must be a non-empty list of {role, content} mappings")
        if n < 1:
            raise ValueError(f"recipe.n must be >= 1, got {n}")
        self.messages = [dict(m) for m in messages]
        self.n = n
        self.sampling = check_sampling(sampling)
        self.json_schema = json_schema
        if json_schema is not None:
            properties = json_schema.get("properties") or {}
            if json_schema.get("type") != "object" or not properties:
                raise ValueError("recipe.json_schema must be an object schema with properties")
            self.columns = {k: _ARROW.get(v.get("type"), pa.string()) for k, v in properties.items()}
        else:
            self.columns = {output: pa.string()}
        self.output = output
        self.text_fields = tuple(k for k, t in self.columns.items() if t == pa.string())
        self.required_fields = tuple(dict.fromkeys(f for m in messages for f in placeholders(m["content"])))

    def _fields(self, text: str) -> dict[str, Any]:
        if self.json_schema is None:
            return {self.output: text.strip()}
        value = parse_json(text)
        if not isinstance(value, dict):
            raise StepFailed("parse", f"output is not a JSON object: {text[:200]!r}")
        fields = {}
        for key, kind in self.columns.items():
            item = value.get(key)
            fields[key] = item if kind != pa.string() or item is None or isinstance(item, str) else json.dumps(item)
        return fields

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        messages = [{"role": m["role"], "content": render(m["content"], **seed)} for m in self.messages]
        call = Sample()
        done = call.spend(await engine.chat(messages, n=self.n, json_schema=self.json_schema, **self.sampling))
        if not done.ok:
            return [call.fail("engine", done.error)]
        # The call's tokens (all n samples') are booked on the first, so per-row sums add up to the run total.
        samples = call.fan_out([{} for _ in done.texts])

        async def parse(sample: Sample, text: str) -> Sample:
            sample.fields = self._fields(text)
            return sample

        return [await attempt(s, lambda s, t=t: parse(s, t)) for s, t in zip(samples, done.texts, strict=True)]
