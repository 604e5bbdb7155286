"""Best-of-n for any recipe: run it n times per seed and let the ``best_of_n`` filter step keep the best candidate.

"LLM See, LLM Do" (Shumailov et al., 2024: active inheritance) generates several candidates per prompt and keeps the
one that best meets a non-differentiable objective (length, lexical diversity, a classifier's or a judge's score);
RLAIF-V and SYNFAC-EDIT keep the best and the worst as a preference pair. Here the recipe runs ``n`` times per seed,
each run with its own random generator derived from the seed's, concurrently (the engine batches them); the i-th
sample of every run competes in group i (``candidate_group``). With the ``judge`` objective the ``judge`` role
scores each candidate here (``judge_score``, 1–10); the choice itself is made by filtering/best_of_n.py, after the
other filters, so a candidate another filter drops never wins.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import pyarrow as pa

from filtering.best_of_n import objective_weights
from generation.recipes.base import EngineClient, Recipe, Sample, StepFailed, render, role, user

OBJECTIVES = ("length", "distinct_n", "classifier", "judge")
DIRECTIONS = ("max", "min")
GROUP, JUDGE_SCORE = "candidate_group", "judge_score"
JUDGE_PROMPT = (
    "Rate how well the response fulfils the request, from 1 (useless or wrong) to 10 (excellent).\n\n"
    "Request:\n{prompt}\n\nResponse:\n{candidate}\n\nAnswer with JSON only."
)
JUDGE_SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10}},
    "required": ["score"],
}


@dataclass(frozen=True)
class Selection:
    """``recipe.best_of_n``: how many candidates, and how the best is chosen.

    Args:
        n: candidates per seed (n× the generation cost); 1 turns best-of-n off.
        objective: one of OBJECTIVES, or a mapping objective → weight (a weighted sum of each objective's score
            scaled to [0, 1] within the group).
        field: the column the objective reads (defaults to the recipe's last text field: its response).
        length_target: ``length``: the number of words to be closest to; null prefers the longest.
        distinct: ``distinct_n``: n of the n-grams (distinct-2 by default).
        classifier: ``classifier``: keep the candidate whose ``classifier_score`` is highest (max) or lowest (min),
            scored by a classifier filter step of the run.
        pairs: write the best (``chosen``) and the worst (``rejected``) of each group with their ``pair_margin`` on
            the kept row, for DPO; groups whose best and worst tie get no pair.
        judge_prompt: the judge's prompt (``{prompt}``, ``{candidate}``).
        prompt_field: the column holding what the candidate answers (the judge's ``{prompt}`` and the export's
            prompt); defaults to the recipe's first text field other than ``field``.
        judge_sampling: sampling of the judge's calls.
    """

    n: int = 1
    objective: str | Mapping[str, float] = "length"
    field: str | None = None
    length_target: int | None = None
    distinct: int = 2
    classifier: str = "max"
    pairs: bool = False
    judge_prompt: str = JUDGE_PROMPT
    prompt_field: str | None = None
    judge_sampling: Mapping[str, Any] = dataclass_field(default_factory=lambda: {"temperature": 0.0, "max_tokens": 16})

    @property
    def weights(self) -> dict[str, float]:
        return objective_weights(self.objective)


def parse_selection(config: Mapping[str, Any] | None) -> Selection | None:
    """The recipe's ``best_of_n`` section checked; None when it is absent or n is 1."""
    if not config:
        return None
    try:
        selection = Selection(**dict(config))
    except TypeError as exc:
        raise ValueError(f"recipe.best_of_n: {exc}; valid keys: {sorted(Selection.__dataclass_fields__)}") from None
    if int(selection.n) < 1:
        raise ValueError(f"recipe.best_of_n.n must be >= 1, got {selection.n}")
    unknown = sorted(set(selection.weights) - set(OBJECTIVES))
    if unknown or not selection.weights:
        raise ValueError(f"recipe.best_of_n.objective: {unknown or 'empty'}; valid choices: {list(OBJECTIVES)}")
    if selection.classifier not in DIRECTIONS:
        raise ValueError(f"recipe.best_of_n.classifier: {selection.classifier!r}; valid choices: {list(DIRECTIONS)}")
    if int(selection.distinct) < 1:
        raise ValueError(f"recipe.best_of_n.distinct must be >= 1, got {selection.distinct}")
    return selection if int(selection.n) > 1 else None


class BestOfN:
    """``recipe`` run ``selection.n`` times per seed; every candidate a row of its ``candidate_group``."""

    def __init__(self, recipe: Recipe, selection: Selection) -> None:
        self.inner, self.selection = recipe, selection
        text = list(recipe.text_fields)
        field = selection.field or text[-1]
        if field not in recipe.columns:
            raise ValueError(
                f"recipe.best_of_n.field {field!r} is not a column of recipe {recipe.name!r}: {sorted(recipe.columns)}"
            )
        self.field = field
        self.prompt_field = selection.prompt_field or next((f for f in text if f != field), None)
        extra = {GROUP: pa.int32(), **({JUDGE_SCORE: pa.float64()} if "judge" in selection.weights else {})}
        clash = sorted(set(extra) & set(recipe.columns))
        if clash:
            raise ValueError(f"recipe {recipe.name!r} has its own {clash} column(s): best_of_n cannot add them")
        if selection.pairs and {"chosen", "rejected", "pair_margin"} & set(recipe.columns):
            raise ValueError(
                f"recipe.best_of_n.pairs: recipe {recipe.name!r} writes its own chosen/rejected columns; "
                "export those (format=dpo) instead"
            )
        self.columns = {**recipe.columns, **extra}

    def __getattr__(self, name: str) -> Any:
        # Everything else (name, text_fields, balance_fields, the corpus and state hooks, run figures) is the recipe's.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        base = rng.getrandbits(64)

        async def candidate(k: int) -> list[Sample]:
            samples = await self.inner.run(seed, engine, random.Random(f"{base}\x00{k}"))
            for group, sample in enumerate(samples):
                sample.fields[GROUP] = group
            if "judge" in self.selection.weights:
                await asyncio.gather(*(self.judge(seed, s, engine) for s in samples if usable(s)))
            return samples

        runs = await asyncio.gather(*(candidate(k) for k in range(int(self.selection.n))))
        return [sample for run in runs for sample in run]

    async def judge(self, seed: dict[str, Any], sample: Sample, engine: EngineClient) -> None:
        """``judge_score`` of one candidate by the judge role; a failed call leaves it null (the candidate ranks
        last on the judge's part of the objective)."""
        prompt = sample.fields.get(self.prompt_field) if self.prompt_field else None
        if prompt is None:
            prompt = seed.get("instruction") or seed.get("text") or json.dumps(seed, ensure_ascii=False)
        message = render(self.selection.judge_prompt, prompt=prompt, candidate=sample.fields.get(self.field) or "")
        try:
            verdict = await sample.ask_json(
                role(engine, "judge"), user(message), JUDGE_SCHEMA, **dict(self.selection.judge_sampling)
            )
            sample.fields[JUDGE_SCORE] = float(verdict["score"])
        except (StepFailed, KeyError, TypeError, ValueError):
            sample.fields[JUDGE_SCORE] = None


def usable(sample: Sample) -> bool:
    return sample.error is None and sample.reject_reason is None


def wrap(recipe: Recipe, config: Mapping[str, Any] | None) -> Recipe:
    """``recipe`` itself, or wrapped in ``BestOfN`` when its ``best_of_n`` section asks for more than one candidate."""
    selection = parse_selection(config)
    return recipe if selection is None else BestOfN(recipe, selection)  # type: ignore[return-value]


def selection_step(recipe: Recipe) -> dict[str, Any] | None:
    """The ``best_of_n`` filter step a wrapped recipe needs (None for a plain recipe)."""
    if not isinstance(recipe, BestOfN):
        return None
    chosen = recipe.selection
    return {
        "kind": "best_of_n",
        "field": recipe.field,
        "objective": chosen.objective if isinstance(chosen.objective, str) else dict(chosen.objective),
        "length_target": chosen.length_target,
        "distinct": chosen.distinct,
        "classifier": chosen.classifier,
        "pairs": chosen.pairs,
    }
