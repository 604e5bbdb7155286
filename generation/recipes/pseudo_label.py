"""Pseudo-labeling: n sampled labels per unlabeled text (majority vote, agreement as confidence), or the model's own
probability of each label.

After self-consistency (Wang et al., 2023) applied to annotation, and candidate-label pseudo-labeling where the
model first proposes a set of plausible labels whose votes are then distilled into one label. Each vote is a
JSON-constrained call (``label`` from the label set; in candidate mode ``candidates``, a subset of it). In
``logprob`` mode one scoring call reads the probability of each answer ``{"label": <label>}`` from the model's token
log-probabilities (calibrated pseudo-labels, as in SuperContext and "a little help" where a small model's confidence
guides a larger one); an engine that cannot score (an HTTP server without prompt log-probabilities) falls back to
votes, and ``confidence_source`` says which the row got.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Iterable
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient, check_sampling
from generation.recipes.base import Sample, StepFailed, attempt, parse_json, render, user

MODES = ("vote", "candidates", "logprob")


def entropy(weights: Iterable[float]) -> float:
    """Entropy in nats of ``weights`` normalised to sum to 1."""
    weights = [w for w in weights if w > 0]
    total = sum(weights)
    return round(-sum(w / total * math.log(w / total) for w in weights), 4) + 0.0  # + 0.0: no -0.0


class PseudoLabel:
    """Args:
    labels: the label set.
    n: sampled votes per text.
    mode: ``vote`` (one label per vote), ``candidates`` (each vote names the plausible labels) or ``logprob`` (each
        label's probability from one scoring call; votes when the engine cannot score).
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
        # label → probability (logprob) or share of the votes naming it, as JSON; the entropy (nats) of those values
        # normalised to sum to 1 (candidate votes name several labels); where the confidence came from.
        "distribution": pa.string(),
        "entropy": pa.float64(),
        "confidence_source": pa.string(),
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
        if mode not in MODES:
            raise ValueError(f"unknown recipe.mode {mode!r}; valid choices: {list(MODES)}")
        self.labels, self.prompt, self.n, self.mode = [str(x) for x in labels], prompt, n, mode
        self.min_confidence = min_confidence
        self.sampling = check_sampling(sampling)
        item = {"type": "string", "enum": self.labels}
        self.schema = (
            {"type": "object", "properties": {"label": item}, "required": ["label"]}
            if mode != "candidates"
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
            chosen = [value.get("label")] if self.mode != "candidates" else value.get("candidates") or []
            votes.update({c for c in chosen if c in self.labels})
        return votes

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        text = seed["text"].strip()
        messages = user(render(self.prompt, text=text, labels=", ".join(self.labels)))

        async def scored(sample: Sample) -> dict[str, float] | None:
            """label → probability, or None when the engine cannot score (votes instead)."""
            try:
                scores = await sample.ask_scores(engine, messages, [json.dumps({"label": x}) for x in self.labels])
            except StepFailed:
                return None
            return {label: scores[json.dumps({"label": label})] for label in self.labels}

        async def voted(sample: Sample) -> dict[str, float]:
            done = await sample.ask(engine, messages, n=self.n, json_schema=self.schema, **self.sampling)
            votes = self.tally(done.texts)
            if not votes:
                raise StepFailed("parse", f"no valid label in {len(done.texts)} votes: {done.texts[:2]!r}"[:300])
            sample.fields["votes"] = json.dumps(dict(votes.most_common()))
            return {label: count / len(done.texts) for label, count in votes.most_common()}

        async def label(sample: Sample) -> Sample:
            distribution = await scored(sample) if self.mode == "logprob" else None
            source = "logprob" if distribution is not None else "votes"
            if distribution is None:
                distribution = await voted(sample)
            label, confidence = max(distribution.items(), key=lambda item: item[1])
            sample.fields.update(
                text=text,
                label=label,
                confidence=round(confidence, 4),
                candidates=[c for c, share in distribution.items() if share >= 0.5],
                distribution=json.dumps({k: round(v, 4) for k, v in distribution.items()}),
                entropy=entropy(distribution.values()),
                confidence_source=source,
            )
            if confidence < self.min_confidence:
                return sample.reject(f"confidence_{confidence:.2f}_below_{self.min_confidence}")
            return sample

        return [await attempt(Sample(), label)]
