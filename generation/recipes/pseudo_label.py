"""Self-consistency pseudo-labeling: n sampled labels per unlabeled text, majority vote, agreement as confidence.

After self-consistency (Wang et al., 2023) applied to annotation, and candidate-label pseudo-labeling where the
model first proposes a set of plausible labels whose votes are then distilled into one label. Each vote is a
JSON-constrained call (``label`` from the label set; in candidate mode ``candidates``, a subset of it).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient, check_sampling
from generation.recipes.base import Sample, attempt, parse_json, render, user


class PseudoLabel:
    """Args:
    labels: the label set.
    n: sampled votes per text.
    mode: ``vote`` (one label per vote) or ``candidates`` (each vote names the plausible labels).
    prompt: ``{text}``, ``{labels}``.
    min_confidence: rows whose agreement is lower go to rejected/ (0 keeps all; a threshold filter can also act
        on ``confidence`` later).
    sampling: sampling for the votes (temperature > 0, or the votes are all the same).
    """

    name: ClassVar[str] = "pseudo_label"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "text": pa.string(),
        "label": pa.string(),
        "confidence": pa.float64(),
        "votes": pa.string(),
        "candidates": pa.list_(pa.string()),
    }
    text_fields: ClassVar[tuple[str, ...]] = ("text",)
    balance_fields: ClassVar[tuple[str, ...]] = ("label",)
    required_fields: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(
        self,
        labels: list[str],
        prompt: str,
        n: int = 5,
        mode: str = "vote",
        min_confidence: float = 0.0,
        sampling: dict | None = None,
    ) -> None:
        if len(labels) < 2:
            raise ValueError(f"recipe.labels needs at least 2 labels, got {labels}")
        if mode not in ("vote", "candidates"):
            raise ValueError(f"unknown recipe.mode {mode!r}; valid choices: ['vote', 'candidates']")
        self.labels, self.prompt, self.n, self.mode = [str(x) for x in labels], prompt, n, mode
        self.min_confidence = min_confidence
        self.sampling = check_sampling(sampling)
        item = {"type": "string", "enum": self.labels}
        self.schema = (
            {"type": "object", "properties": {"label": item}, "required": ["label"]}
            if mode == "vote"
            else {
                "type": "object",
                "properties": {"candidates": {"type": "array", "items": item, "minItems": 1}},
                "required": ["candidates"],
            }
        )

    def tally(self, texts: list[str]) -> Counter:
        votes: Counter = Counter()
        for text in texts:
            value = parse_json(text)
            if not isinstance(value, dict):
                continue
            chosen = [value.get("label")] if self.mode == "vote" else value.get("candidates") or []
            votes.update({c for c in chosen if c in self.labels})
        return votes

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        text = seed["text"].strip()

        async def vote(sample: Sample) -> Sample:
            done = await sample.ask(
                engine,
                user(render(self.prompt, text=text, labels=", ".join(self.labels))),
                n=self.n,
                json_schema=self.schema,
                **self.sampling,
            )
            votes = self.tally(done.texts)
            if not votes:
                return sample.fail("parse", f"no valid label in {len(done.texts)} votes: {done.texts[:2]!r}"[:300])
            ((label, top),) = votes.most_common(1)
            confidence = top / len(done.texts)
            sample.fields.update(
                text=text,
                label=label,
                confidence=round(confidence, 4),
                votes=json.dumps(dict(votes.most_common())),
                candidates=[c for c, k in votes.most_common() if k / len(done.texts) >= 0.5],
            )
            if confidence < self.min_confidence:
                return sample.reject(f"confidence_{confidence:.2f}_below_{self.min_confidence}")
            return sample

        return [await attempt(Sample(), vote)]
