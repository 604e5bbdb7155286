"""LLM judge: single-answer scores with a critique, or pairwise A/B judged in both orders.

After Auto-J (Li et al., 2023, "Generative Judge for Evaluating Alignment"): a critique before the verdict, by a
dedicated judge model (the ``judge`` role; the generator when the run sets none). Pairwise judgements are asked
twice with the answers swapped (Zheng et al., 2023; Wang et al., 2023, "Large Language Models are not Fair
Evaluators"; LLMBar, Zeng et al., 2024): both orders' critiques and verdicts are kept, and a pair whose verdicts
disagree once unswapped is position-inconsistent: a tie, or rejected (``on_inconsistent``). The rate of consistent
pairs is a run figure (``position_consistency_rate`` in run.json).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient, check_sampling
from generation.recipes.base import Sample, attempt, render, role, user

SCORE_SCHEMA = {
    "type": "object",
    "properties": {"critique": {"type": "string"}, "score": {"type": "integer", "minimum": 1, "maximum": 10}},
    "required": ["critique", "score"],
}
PAIR_SCHEMA = {
    "type": "object",
    "properties": {"critique": {"type": "string"}, "winner": {"type": "string", "enum": ["A", "B", "tie"]}},
    "required": ["critique", "winner"],
}


ON_INCONSISTENT = ("tie", "reject")


def unswap(verdict: str) -> str:
    """A verdict given on (B, A), read on (A, B)."""
    return {"A": "B", "B": "A"}.get(verdict, verdict)


def combine(first: str, swapped: str) -> str:
    """Winner over both orders: ``first`` judged (A, B); ``swapped`` judged (B, A) and so read with A/B exchanged."""
    return first if first == unswap(swapped) and first in ("A", "B") else "tie"


def consistent(first: str, swapped: str) -> bool:
    """Both orders gave the same verdict (a tie in both counts)."""
    return first == unswap(swapped)


class Judge:
    """Args:
    mode: ``single`` (score 1–10 the seed's response) or ``pairwise`` (compare ``response_a``/``response_b``).
    response_field: the seed field holding the answer in single mode.
    single_prompt: ``{instruction}``, ``{response}``.
    pairwise_prompt: ``{instruction}``, ``{answer_a}``, ``{answer_b}``.
    on_inconsistent: what a pair whose two orders disagree becomes: ``tie`` (kept) or ``reject`` (to rejected/).
    sampling: sampling for judging calls (low temperature recommended).
    """

    name: ClassVar[str] = "judge"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "mode": pa.string(),
        "instruction": pa.string(),
        "response": pa.string(),
        "response_b": pa.string(),
        "score": pa.int32(),
        "critique": pa.string(),
        "critiques": pa.list_(pa.string()),
        "winner": pa.string(),
        "order_verdicts": pa.list_(pa.string()),
        "position_consistent": pa.bool_(),
    }
    text_fields: ClassVar[tuple[str, ...]] = ("critique",)
    balance_fields: ClassVar[tuple[str, ...]] = ("score", "winner")
    tally_fields: ClassVar[tuple[str, ...]] = ("position_consistent",)

    def __init__(
        self,
        single_prompt: str,
        pairwise_prompt: str,
        mode: str = "single",
        response_field: str = "output",
        on_inconsistent: str = "tie",
        sampling: dict | None = None,
    ) -> None:
        if mode not in ("single", "pairwise"):
            raise ValueError(f"unknown recipe.mode {mode!r}; valid choices: ['single', 'pairwise']")
        if on_inconsistent not in ON_INCONSISTENT:
            raise ValueError(
                f"unknown recipe.on_inconsistent {on_inconsistent!r}; valid choices: {list(ON_INCONSISTENT)}"
            )
        self.on_inconsistent = on_inconsistent
        self.mode, self.response_field = mode, response_field
        self.single_prompt, self.pairwise_prompt = single_prompt, pairwise_prompt
        self.sampling = check_sampling(sampling)
        self.required_fields = (
            ("instruction", response_field) if mode == "single" else ("instruction", "response_a", "response_b")
        )

    async def _single(self, seed: dict[str, Any], engine: EngineClient, sample: Sample) -> Sample:
        response = seed[self.response_field].strip()
        verdict = await sample.ask_json(
            engine,
            user(render(self.single_prompt, instruction=seed["instruction"], response=response)),
            SCORE_SCHEMA,
            **self.sampling,
        )
        score = verdict.get("score") if isinstance(verdict, dict) else None
        if not isinstance(score, int) or not 1 <= score <= 10:
            return sample.fail("parse", f"score is not an integer 1-10: {verdict!r}"[:300])
        critique = str(verdict.get("critique", "")).strip()
        sample.fields.update(
            mode="single",
            instruction=seed["instruction"],
            response=response,
            score=score,
            critique=critique,
            critiques=[critique],
        )
        return sample

    async def _pairwise(self, seed: dict[str, Any], engine: EngineClient, sample: Sample) -> Sample:
        a, b, instruction = seed["response_a"].strip(), seed["response_b"].strip(), seed["instruction"]
        orders = await asyncio.gather(
            *(
                sample.ask_json(
                    engine,
                    user(render(self.pairwise_prompt, instruction=instruction, answer_a=x, answer_b=y)),
                    PAIR_SCHEMA,
                    **self.sampling,
                )
                for x, y in ((a, b), (b, a))
            )
        )
        winners = [str(v.get("winner")) if isinstance(v, dict) else "?" for v in orders]
        if any(w not in ("A", "B", "tie") for w in winners):
            return sample.fail("parse", f"winner is not A, B or tie: {orders!r}"[:300])
        critiques = [str(v.get("critique", "")).strip() for v in orders]
        agreed = consistent(*winners)
        sample.fields.update(
            mode="pairwise",
            instruction=instruction,
            response=a,
            response_b=b,
            winner=combine(*winners),
            order_verdicts=winners,
            critique=critiques[0],
            critiques=critiques,
            position_consistent=agreed,
        )
        if not agreed and self.on_inconsistent == "reject":
            return sample.reject("position_inconsistent")
        return sample

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        step = self._single if self.mode == "single" else self._pairwise
        judge = role(engine, "judge")
        return [await attempt(Sample(), lambda s: step(seed, judge, s))]

    @staticmethod
    def run_figures(tallies: dict[str, dict[str, int]], roles: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The share of judged pairs whose two orders agreed, over every pair judged (kept or rejected); the roles'
        figures play no part."""
        counts = tallies.get("position_consistent") or {}
        judged = counts.get("True", 0) + counts.get("False", 0)
        return {"position_consistency_rate": round(counts.get("True", 0) / judged, 4)} if judged else {}
