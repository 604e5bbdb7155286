"""A deterministic engine with no model: same interface as vLLM, for unit and scale tests."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from collections.abc import Sequence
from typing import Any

from generation.engines.base import Completion, Messages, check_choices, check_sampling, normalised_scores


class DryRunEngine:
    """Deterministic text from the prompt: same interface as vLLM, no model, for unit and scale tests.

    The text is a hash-seeded word sequence, so equal prompts give equal outputs and different prompts differ;
    with ``json_schema`` it returns an object with a string for each required property.
    """

    _WORDS = (
        "data",
        "model",
        "river",
        "green",
        "quickly",
        "explain",
        "seven",
        "simple",
        "write",
        "garden",
        "number",
        "light",
        "travel",
        "harbor",
        "careful",
        "answer",
        "table",
        "bright",
        "question",
        "story",
    )

    def __init__(
        self,
        model_name: str = "dry-run",
        max_model_len: int = 4096,
        echo: bool = False,
        latency_s: float = 0.0,
        **default_sampling: Any,
    ) -> None:
        self.model_name = model_name
        self.max_model_len = max_model_len
        self.echo = echo
        self.latency_s = latency_s
        self.default_sampling = check_sampling(default_sampling)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _fake(self, schema: dict[str, Any], words: list[str], depth: int = 0) -> Any:
        """A value that satisfies ``schema`` (the subset recipes use), built deterministically from ``words``."""
        pick = len(words) + depth
        if "enum" in schema:
            return schema["enum"][pick % len(schema["enum"])]
        kind = schema.get("type")
        if kind == "object":
            return {
                k: self._fake(v, words[i:] or words, depth + 1 + i)
                for i, (k, v) in enumerate(schema.get("properties", {}).items())
            }
        if kind == "array":
            count = max(int(schema.get("minItems", 0)), min(int(schema.get("maxItems", 3)), 3))
            return [self._fake(schema.get("items", {}), [f"{w}{j}" for w in words], depth + j) for j in range(count)]
        if kind == "integer":
            low, high = int(schema.get("minimum", 0)), int(schema.get("maximum", 100))
            return low + pick % (high - low + 1)
        if kind == "number":
            return float(pick % 10) / 10
        if kind == "boolean":
            return pick % 2 == 0
        return " ".join(words[: 6 + depth % 4])

    def _text(self, prompt: str, index: int, max_tokens: int) -> str:
        digest = hashlib.blake2b(f"{index}\x00{prompt}".encode(), digest_size=32).digest()
        count = 8 + digest[0] % max(1, min(max_tokens, 48) - 8)
        words = [self._WORDS[b % len(self._WORDS)] for b in itertools.islice(itertools.cycle(digest), count)]
        return " ".join(words).capitalize() + "."

    async def generate(
        self, prompt: str, *, n: int = 1, json_schema: dict | None = None, **sampling: Any
    ) -> Completion:
        params = {**self.default_sampling, **check_sampling(sampling)}
        prompt_tokens = len(prompt.split())
        if prompt_tokens > self.max_model_len:
            return Completion(error=f"prompt has {prompt_tokens} tokens, over max_model_len={self.max_model_len}")
        max_tokens = int(params.get("max_tokens") or 64)
        texts = [prompt if self.echo else self._text(prompt, i, max_tokens) for i in range(n)]
        if json_schema is not None and not (self.echo and _is_json(prompt)):  # echo plants JSON outputs as they are
            texts = [json.dumps(self._fake(json_schema, t.split())) for t in texts]
        # Yield like a real engine call, so concurrency bugs show up in unit tests; latency_s stands in for generation
        # time in scale and fault tests.
        await asyncio.sleep(self.latency_s)
        done = Completion(texts, prompt_tokens, sum(len(t.split()) for t in texts))
        if params.get("logprobs"):  # one per word, from the word's hash: -0.5 to 0
            done.logprobs = [[-_unit(f"{i}\x00{w}") / 2 for w in t.split()] for i, t in enumerate(texts)]
        return done

    async def score(self, messages: Messages, choices: Sequence[str]) -> Completion:
        if bad := check_choices(choices):
            return Completion(error=bad)
        prompt = "\n".join(m["content"] for m in messages)
        await asyncio.sleep(self.latency_s)
        logprobs = [-3 * _unit(f"{prompt}\x00{choice}") for choice in choices]
        return Completion(
            prompt_tokens=len(choices) * len(prompt.split()),
            completion_tokens=len(choices),
            scores=normalised_scores(choices, logprobs),
        )

    async def chat(
        self, messages: Messages, *, n: int = 1, json_schema: dict | None = None, **sampling: Any
    ) -> Completion:
        # Echo mode answers with the last message itself, so tests can plant known outputs through the seeds.
        prompt = messages[-1]["content"] if self.echo else "\n".join(f"<{m['role']}> {m['content']}" for m in messages)
        return await self.generate(prompt, n=n, json_schema=json_schema, **sampling)

    def shutdown(self) -> None:
        pass


def _unit(text: str) -> float:
    """A number in [0, 1) from ``text``'s hash."""
    return hashlib.blake2b(text.encode(), digest_size=4).digest()[0] / 256


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
