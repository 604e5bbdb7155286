"""A recipe written in yaml: a messages template, sampling and ``n``; each completion is one sample.

Placeholders ``{field}`` in the messages are filled from the seed in a single pass, so seed text is inserted as a
value and never scanned for placeholders itself (a seed containing ``{other}`` or ``${oc.env:X}`` stays literal).
"""

from __future__ import annotations

import random
import re
from typing import Any, ClassVar

import pyarrow as pa

from generation.engine import EngineClient, check_sampling
from generation.recipes.base import Sample

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def fill(template: str, values: dict[str, Any]) -> str:
    return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1)) or ""), template)


class Template:
    """Args:
    messages: chat messages (``role``, ``content``) whose ``{field}`` placeholders name seed fields.
    n: completions per seed; each becomes a sample.
    sampling: sampling for the call (merged over the model's defaults).
    output: name of the column holding the completion.
    """

    name: ClassVar[str] = "template"
    required_fields: tuple[str, ...]

    def __init__(
        self, messages: list[dict[str, str]], n: int = 1, sampling: dict | None = None, output: str = "response"
    ) -> None:
        if not messages or any(set(m) != {"role", "content"} for m in messages):
            raise ValueError("recipe.messages must be a non-empty list of {role, content} mappings")
        if n < 1:
            raise ValueError(f"recipe.n must be >= 1, got {n}")
        self.messages = [dict(m) for m in messages]
        self.n = n
        self.sampling = check_sampling(dict(sampling or {}))
        self.output = output
        self.columns = {output: pa.string()}
        self.text_fields = (output,)
        self.required_fields = tuple(dict.fromkeys(f for m in messages for f in _PLACEHOLDER.findall(m["content"])))

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        messages = [{"role": m["role"], "content": fill(m["content"], seed)} for m in self.messages]
        done = await engine.chat(messages, n=self.n, **self.sampling)
        if not done.ok:
            return [Sample(prompt_tokens=done.prompt_tokens).fail("engine", done.error)]
        # Tokens are split evenly across the n samples so per-row sums equal the run total.
        share = [(done.prompt_tokens // len(done.texts), done.completion_tokens // len(done.texts))] * len(done.texts)
        return [Sample({self.output: text.strip()}, p, c) for text, (p, c) in zip(done.texts, share, strict=True)]
