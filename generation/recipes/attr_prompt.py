"""AttrPrompt: attributed prompts for diverse, balanced training data.

Yu et al., 2023, "Large Language Model as Attributed Training Data Generator: A Tale of Diversity and Bias", §3.
The paper's key step is attribute generation: once per task the model proposes the attribute dimensions along which
texts of that task should vary (subtopic, length, style, ...) and then the values of each, class by class for the
dimensions whose values depend on the class (a sports subtopic is no politics subtopic). Each prompt then fixes one
value per dimension and the class label, instead of asking the same question again and again.

Here the dimensions and values are proposed once per run for each distinct task and label set (the first engine
actor to get there computes them, the others wait; kept as ``artifacts/attributes-<id>.json`` and reused on resume),
or fixed in config (``recipe.attributes``). A seed's ``labels`` field is its label set (``recipe.labels`` for seeds
without one). For every label set, a run-wide cursor hands out (label, combination) pairs in a run-seeded order that
visits the labels in turn and each label's combinations in a cycle, so over the run every label and every
combination of a label is used the same number of times (±1).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient, check_sampling
from generation.recipes.base import Sample, StepFailed, attempt, placeholders, render, string_list, user
from generation.state import ARTIFACT, SharedState

CURSOR = "attr_prompt_cursor"


def dimensions_schema(count: int) -> dict[str, Any]:
    dimension = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 30},
            "class_specific": {"type": "boolean"},
        },
        "required": ["name", "class_specific"],
    }
    dimensions = {"type": "array", "minItems": 1, "maxItems": max(1, count), "items": dimension}
    return {"type": "object", "properties": {"dimensions": dimensions}, "required": ["dimensions"]}


class AttrPrompt:
    """Args:
    prompt: user message; ``{task}``, ``{label}``, ``{attributes}`` (the combination, one ``- name: value`` line each)
        and, with fixed attributes, each ``{attribute}``.
    attributes: attribute name → list of values, fixed for every task; null: the model proposes them per task.
    labels: the label set of seeds that have no ``labels`` field.
    samples_per_seed: (label, combination) pairs generated per seed, walked in turn through the label set's cycle.
    dimensions: attribute dimensions the model proposes per task.
    values_per_dimension: values the model proposes per dimension (per class for class-specific dimensions).
    dimension_prompt: ``{task}``, ``{labels}``, ``{count}``; value_prompt: ``{task}``, ``{dimension}``, ``{count}``;
        class_value_prompt: the same and ``{label}``.
    sampling: sampling for every call.
    run_seed: shuffles the cycles (set from run.seed by the pipeline).
    """

    name: ClassVar[str] = "attr_prompt"
    text_fields: ClassVar[tuple[str, ...]] = ("text",)
    required_fields: ClassVar[tuple[str, ...]] = ("task",)

    def __init__(
        self,
        prompt: str,
        attributes: dict[str, list] | None = None,
        labels: list[str] | None = None,
        samples_per_seed: int = 4,
        dimensions: int = 3,
        values_per_dimension: int = 4,
        dimension_prompt: str = "",
        value_prompt: str = "",
        class_value_prompt: str = "",
        sampling: dict | None = None,
        run_seed: int = 0,
    ) -> None:
        if samples_per_seed < 1:
            raise ValueError(f"recipe.samples_per_seed must be >= 1, got {samples_per_seed}")
        if attributes is not None:
            if not attributes or any(not values for values in attributes.values()):
                raise ValueError("recipe.attributes needs at least one attribute, each with a non-empty list of values")
            if "label" in attributes:
                raise ValueError(
                    "recipe.attributes.label: labels are not an attribute; they come from each seed's `labels` field, "
                    "or recipe.labels for seeds without one"
                )
            self.attributes: dict[str, list[str]] | None = {k: [str(v) for v in vs] for k, vs in attributes.items()}
        else:
            self.attributes = None
            missing = [k for k, v in (("dimension_prompt", dimension_prompt), ("value_prompt", value_prompt)) if not v]
            missing += ["class_value_prompt"] if not class_value_prompt else []
            if missing:
                raise ValueError(
                    f"recipe.attributes is null (the model proposes them), so recipe.{missing[0]} is needed"
                )
        allowed = {"task", "label", "attributes", *(self.attributes or {})}
        unknown = sorted(set(placeholders(prompt)) - allowed)
        if unknown:
            raise ValueError(f"recipe.prompt names {unknown}; it may use {sorted(allowed)}")
        self.prompt = prompt
        self.labels = [str(label) for label in labels or []]
        self.samples_per_seed = samples_per_seed
        self.dimensions, self.values_per_dimension = max(1, dimensions), max(1, values_per_dimension)
        self.prompts = {"dimension": dimension_prompt, "value": value_prompt, "class_value": class_value_prompt}
        self.sampling = check_sampling(sampling)
        self.run_seed = run_seed
        if self.attributes is None:
            self.columns = {"label": pa.string(), "attributes": pa.map_(pa.string(), pa.string()), "text": pa.string()}
            self.balance_fields: tuple[str, ...] = ("label",)
        else:
            self.columns = {**{k: pa.string() for k in self.attributes}, "label": pa.string(), "text": pa.string()}
            self.balance_fields = (*self.attributes, "label")
        self.state = SharedState()

    def bind_state(self, state: SharedState) -> None:
        """The cursors over the cycles and the proposed attributes are shared by every engine actor of the run."""
        self.state = state

    def label_set(self, seed: dict[str, Any]) -> list[str]:
        labels = seed.get("labels")
        if labels is None:
            if not self.labels:
                raise StepFailed(
                    "input", "the seed has no `labels` field and recipe.labels is empty: no class to write"
                )
            return self.labels
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x.strip() for x in labels):
            raise StepFailed("input", f"the seed's `labels` must be a non-empty list of strings, got {labels!r}"[:300])
        return list(dict.fromkeys(x.strip() for x in labels))

    async def proposed(self, engine: EngineClient, sample: Sample, task: str, labels: list[str]) -> dict[str, Any]:
        """The paper's attribute generation for one task and label set: dimensions, then the values of each (per
        class for class-specific dimensions). A dimension that gets no values is left out."""
        asked = await sample.ask_json(
            engine,
            user(render(self.prompts["dimension"], task=task, labels=", ".join(labels), count=self.dimensions)),
            dimensions_schema(self.dimensions),
            **self.sampling,
        )
        found: dict[str, bool] = {}
        for item in asked.get("dimensions", []):
            name = " ".join(str(item.get("name", "")).lower().split()) if isinstance(item, dict) else ""
            if name and name not in ("label", "class") and name not in found:
                found[name] = item.get("class_specific") is True
        dimensions = []
        for name, specific in list(found.items())[: self.dimensions]:
            keys = labels if specific else [None]
            lists = await asyncio.gather(*(self._values(engine, sample, task, name, label) for label in keys))
            if all(lists):
                values = dict(zip(labels, lists, strict=True)) if specific else lists[0]
                dimensions.append({"name": name, "class_specific": specific, "values": values})
        if not dimensions:
            raise StepFailed("attributes", f"no attribute dimension with values for task {task!r}: {asked!r}"[:300])
        return {"task": task, "labels": labels, "dimensions": dimensions}

    async def _values(self, engine: EngineClient, sample: Sample, task: str, name: str, label: str | None) -> list[str]:
        key, extra = ("value", {}) if label is None else ("class_value", {"label": label})
        prompt = render(self.prompts[key], task=task, dimension=name, count=self.values_per_dimension, **extra)
        try:
            asked = await sample.ask_json(engine, user(prompt), string_list("values", self.values_per_dimension, 60))
        except StepFailed:
            return []
        values = [" ".join(str(v).split()) for v in asked.get("values", []) if isinstance(v, str) and v.strip()]
        return list(dict.fromkeys(values))[: self.values_per_dimension]

    def combinations(self, attributes: dict[str, Any] | None, label: str) -> list[dict[str, str]]:
        """Every combination of attribute values for ``label``, in a run-seeded order."""
        if attributes is None:
            names, lists = list(self.attributes or {}), list((self.attributes or {}).values())
        else:
            names = [d["name"] for d in attributes["dimensions"]]
            lists = [d["values"][label] if d["class_specific"] else d["values"] for d in attributes["dimensions"]]
        cycle = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*lists)]
        random.Random(f"{self.run_seed}\x00{label}").shuffle(cycle)
        return cycle

    async def next_pairs(self, key: str, labels: list[str], attributes: dict[str, Any] | None) -> list[tuple]:
        """The next ``samples_per_seed`` (label, combination) pairs of the label set's cycle: labels in turn, each
        label's combinations in its own cycle, so both are used evenly over the run."""
        cycles = {label: self.combinations(attributes, label) for label in labels}
        start = await self.state.advance(f"{CURSOR}/{key}", self.samples_per_seed)
        pairs = []
        for position in range(start, start + self.samples_per_seed):
            label = labels[position % len(labels)]
            cycle = cycles[label]
            pairs.append((label, cycle[(position // len(labels)) % len(cycle)]))
        return pairs

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        task = seed["task"].strip()
        first = Sample()
        try:
            labels = self.label_set(seed)
            # One cycle, hence one cursor, per label set (fixed attributes) or per task and label set (proposed).
            key, attributes = _digest(labels), None
            if self.attributes is None:
                key = _digest([task, labels])
                try:
                    attributes = await self.state.compute_once(
                        f"{ARTIFACT}attributes-{key}", lambda: self.proposed(engine, first, task, labels)
                    )
                except RuntimeError as exc:  # another worker's attribute generation for this task failed
                    raise StepFailed("attributes", str(exc)) from exc
        except StepFailed as failed:
            return [first.fail(failed.stage, failed.error)]
        pairs = await self.next_pairs(key, labels, attributes)
        samples = first.fan_out([self._fields(label, combo) for label, combo in pairs])

        async def write(sample: Sample, label: str, combo: dict[str, str]) -> Sample:
            listed = "\n".join(f"- {name}: {value}" for name, value in combo.items())
            fixed = combo if self.attributes is not None else {}
            prompt = render(self.prompt, task=task, label=label, attributes=listed, **fixed)
            done = await sample.ask(engine, user(prompt), **self.sampling)
            sample.fields["text"] = done.text.strip()
            return sample

        return list(
            await asyncio.gather(
                *(attempt(s, lambda s, p=p: write(s, *p)) for s, p in zip(samples, pairs, strict=True))
            )
        )

    def _fields(self, label: str, combo: dict[str, str]) -> dict[str, Any]:
        if self.attributes is None:
            return {"label": label, "attributes": combo}
        return {**combo, "label": label}


def _digest(value: Any) -> str:
    return hashlib.blake2b(json.dumps(value).encode(), digest_size=6).hexdigest()
